//! Policy ports at the waypoint.
//!
//! An AuthorizationPolicy's `to.operation.ports`, `notPorts` and `when: destination.port` name the
//! port the enforcement point sees. A sidecar, and ztunnel, see the destination pod's port (the
//! Service's `targetPort`, resolved to a number where it is named); a waypoint sees the Service
//! port the client called. A Service mapping 80 to 8080 makes a sidecar-era `ports: ["8080"]` the
//! waypoint's `ports: ["80"]`. So the waypoint copy of a policy names, for each container port,
//! the Service ports of the Services it is attached to whose target is that port. Where no set of
//! Service ports means the same on all of them (one Service maps 80 to 8080, another serves 8080
//! to 9090), the copy is refused with the reason: it needs one policy per Service.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::equivalence::topology::Service;

/// Rewrites the ports of `spec`'s rules from container ports to the Service ports of `services`.
pub(crate) fn to_service_ports(spec: &mut Value, services: &[Service]) -> Result<(), String> {
    if services.is_empty() {
        return Ok(());
    }
    let Some(rules) = spec.get_mut("rules").and_then(Value::as_array_mut) else { return Ok(()) };
    for rule in rules {
        for operation in rule.get_mut("to").and_then(Value::as_array_mut).into_iter().flatten() {
            for field in ["ports", "notPorts"] {
                if let Some(ports) = operation.pointer_mut(&format!("/operation/{field}")) {
                    translate_list(ports, services)?;
                }
            }
        }
        for condition in rule.get_mut("when").and_then(Value::as_array_mut).into_iter().flatten() {
            if condition.get("key").and_then(Value::as_str) != Some("destination.port") {
                continue;
            }
            for field in ["values", "notValues"] {
                if let Some(ports) = condition.get_mut(field) {
                    translate_list(ports, services)?;
                }
            }
        }
    }
    Ok(())
}

fn translate_list(ports: &mut Value, services: &[Service]) -> Result<(), String> {
    let Some(list) = ports.as_array() else { return Ok(()) };
    let mut translated = BTreeSet::new();
    for port in list {
        let text = port.as_str().map(str::to_string).unwrap_or_else(|| port.to_string());
        translated.extend(service_ports_for(&text, services)?);
    }
    let translated: Vec<Value> = translated.into_iter().map(|port| Value::String(port.to_string())).collect();
    if translated != *list {
        *ports = Value::Array(translated);
    }
    Ok(())
}

/// The Service ports that reach container port `port` on `services`, as one set that means the
/// same on each of them.
fn service_ports_for(port: &str, services: &[Service]) -> Result<BTreeSet<u32>, String> {
    let container: u32 =
        port.parse().map_err(|_| format!("port {port} is not a number, so its Service port is unknown"))?;
    let all_ports = services.iter().flat_map(|service| service.ports.iter().map(move |p| (service, p)));
    let reaching: BTreeSet<u32> =
        all_ports.clone().filter(|(_, p)| p.target_port == container).map(|(_, p)| p.port).collect();
    let chosen = if reaching.is_empty() { BTreeSet::from([container]) } else { reaching };
    // Every Service port the chosen numbers name must lead to the container port, or the copy
    // would admit (or deny) another port's traffic.
    if let Some((service, other)) =
        all_ports.clone().find(|(_, p)| chosen.contains(&p.port) && p.target_port != container)
    {
        return Err(format!(
            "port {container} is a container port, which the waypoint sees as the Service port that targets it, but \
             Service {} port {} targets {}: the policy needs one copy per Service",
            service.key(),
            other.port,
            other.target_port
        ));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::equivalence::topology::ServicePort;
    use serde_json::json;

    fn service(name: &str, ports: &[(u32, u32)]) -> Service {
        Service {
            namespace: "shop".into(),
            name: name.into(),
            labels: Default::default(),
            selector: None,
            ports: ports
                .iter()
                .map(|(port, target_port)| ServicePort {
                    name: "http".into(),
                    port: *port,
                    target_port: *target_port,
                    target_port_name: None,
                    app_protocol: None,
                })
                .collect(),
            headless: false,
        }
    }

    #[test]
    fn container_ports_become_the_service_ports_that_target_them() {
        let mut spec = json!({"rules": [
            {"to": [{"operation": {"ports": ["8080"], "notPorts": ["9090"]}}]},
            {"when": [{"key": "destination.port", "values": ["8080"]}]}
        ]});
        to_service_ports(&mut spec, &[service("web", &[(80, 8080), (9090, 9090)])]).unwrap();
        assert_eq!(spec["rules"][0]["to"][0]["operation"], json!({"ports": ["80"], "notPorts": ["9090"]}));
        assert_eq!(spec["rules"][1]["when"][0]["values"], json!(["80"]));

        let mut conflicting = json!({"rules": [{"to": [{"operation": {"ports": ["8080"]}}]}]});
        let services = [service("web", &[(80, 8080)]), service("api", &[(80, 9000)])];
        let reason = to_service_ports(&mut conflicting, &services).unwrap_err();
        assert!(reason.contains("Service shop/api port 80 targets 9000"), "{reason}");

        let mut unreachable = json!({"rules": [{"to": [{"operation": {"ports": ["7000"]}}]}]});
        to_service_ports(&mut unreachable, &[service("web", &[(80, 8080)])]).unwrap();
        assert_eq!(
            unreachable["rules"][0]["to"][0]["operation"]["ports"],
            json!(["7000"]),
            "matches nothing, as before"
        );
    }
}
