//! A simulated OpenShift Service Mesh 3.2 cluster on a real API server.
//!
//! The test control plane (`oc-ambient-testenv`) runs a real kube-apiserver and
//! controller-manager, but nothing that a mesh cluster runs on top of them. The [`Simulator`]
//! plays those parts against the API server, through watches, so the plugins read what they would
//! read on OpenShift:
//!
//! - [`kubelet`]: Ready nodes `worker-0..N-1`, scheduling, pods Running with container statuses;
//! - [`logs`]: the kubelets' container-log endpoint (HTTPS on loopback), so `pods/log` works;
//! - [`sail`]: the Sail operator for `Istio`, `IstioCNI` and `ZTunnel`;
//! - [`injector`]: istiod's sidecar injector as a real HTTPS mutating webhook;
//! - [`cni`]: istio-cni's ambient redirection annotation;
//! - [`gateway`]: istiod's Gateway API controller (ingress gateways and waypoints);
//! - [`status`]: istiod's ambient status on AuthorizationPolicies and waypoint-bound Services;
//! - [`platform`]: the OpenShift and OLM objects (written once by a scenario).
//!
//! [`scenario`] holds the named starting points, and [`SimulatedCluster`] puts a fresh control
//! plane, a running simulator and a loaded scenario together for one test. Cluster-scoped
//! singletons (the `Istio` named `default`, nodes, `ClusterVersion`) are why each scenario needs
//! its own control plane rather than a namespace of the shared one.
//!
//! ```no_run
//! # async fn example() -> Result<(), oc_ambient_simulator::Error> {
//! // A fresh control plane, the simulator, and the guide's starting point, ready in seconds.
//! let cluster = oc_ambient_simulator::SimulatedCluster::start("bookinfo-sidecar").await?;
//! let kubeconfig = cluster.plane().kubeconfig(); // for plugin binaries under test
//! let client = cluster.client().await?; // for assertions
//! # let _ = (kubeconfig, client);
//! # Ok(())
//! # }
//! ```
//!
//! Outside tests, `oc-ambient-cluster --scenario NAME` (`make cluster SCENARIO=NAME`) does the
//! same in its own process. `scenario::names()` lists the scenarios.
//!
//! Everything is deterministic: node names, the order of pod addresses and load-balancer
//! addresses follow the order of the API server's events, and nothing is random.

pub mod cni;
pub mod gateway;
pub mod https;
pub mod injector;
pub mod kubelet;
pub mod logs;
pub mod platform;
pub mod resources;
pub mod sail;
pub mod scenario;
pub mod status;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::DynamicObject;
use kube::core::ApiResource;
use kube::runtime::{reflector, watcher};
use oc_ambient_testenv::{ControlPlane, Options as PlaneOptions};
use tokio::task::JoinHandle;

pub use scenario::{Scenario, names};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("control plane: {0}")]
    ControlPlane(#[from] oc_ambient_testenv::Error),
    #[error("webhook TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Invalid(String),
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

impl From<watcher::Error> for Error {
    fn from(err: watcher::Error) -> Self {
        Error::Invalid(format!("watch: {err}"))
    }
}

/// How the simulated cluster is built.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// How many worker nodes (each gets a ztunnel and an istio-cni pod).
    pub nodes: usize,
    /// The kubelet version the nodes report.
    pub kubelet_version: String,
    /// How long a bound pod takes to start and report Ready (none by default; a real one takes
    /// seconds to minutes, which is what the migration bench's rollouts are made to take).
    pub pod_startup: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            kubelet_version: platform::Platform::default().kubelet_version(),
            pod_startup: Duration::ZERO,
        }
    }
}

/// The running simulator. Dropping it (or [`Simulator::stop`]) stops every task and the webhook
/// server; what it wrote stays in the cluster, including the webhook registration, so the API
/// server then meets istiod's failure policy.
#[derive(Debug)]
pub struct Simulator {
    tasks: Vec<JoinHandle<()>>,
    webhook: SocketAddr,
}

fn spawn_logged<F>(what: &'static str, task: F) -> JoinHandle<()>
where
    F: Future<Output = Result<(), Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(err) = task.await {
            tracing::error!("simulator {what} stopped: {err}");
        }
    })
}

impl Simulator {
    /// Creates the nodes and starts every simulated component against `plane`, in the current
    /// tokio runtime.
    pub async fn start(plane: &ControlPlane, options: &Options) -> Result<Simulator, Error> {
        let client = plane.client().await?;
        let serving = plane.pki().issue_serving("istiod.istio-system.svc", vec!["127.0.0.1".into()])?;
        let (kubelet_logs, log_server) = https::serve("kubelet", &serving.cert, &serving.key, logs::handle).await?;
        kubelet::create_nodes(&client, options.nodes, &options.kubelet_version, kubelet_logs.port()).await?;

        let istio_resource = ApiResource::from_gvk(&sail::Component::Istio.gvk());
        let writer = reflector::store::Writer::<DynamicObject>::new(istio_resource);
        let istios = writer.as_reader();
        let mut tasks =
            vec![tokio::spawn(resources::follow(resources::api(&client, &sail::Component::Istio.gvk(), None), writer))];
        let (webhook, server) = injector::serve(injector::Injector::new(istios), &serving.cert, &serving.key).await?;
        tasks.push(server);
        tasks.push(log_server);
        let endpoint = sail::WebhookEndpoint {
            base_url: format!("https://{webhook}"),
            ca_bundle_pem: plane.pki().ca.cert.clone(),
        };

        tasks.push(spawn_logged("kubelet", kubelet::run(client.clone(), options.nodes, options.pod_startup)));
        for component in [sail::Component::Istio, sail::Component::IstioCni, sail::Component::ZTunnel] {
            let (client, endpoint) = (client.clone(), endpoint.clone());
            tasks.push(tokio::spawn(sail::run(client, component, endpoint)));
        }
        tasks.push(spawn_logged("istio-cni", cni::run(client.clone())));
        tasks.push(spawn_logged("gateway controller", gateway::run(client.clone())));
        tasks.push(spawn_logged("istiod status", status::run(client)));
        Ok(Simulator { tasks, webhook })
    }

    /// The injector's address (`127.0.0.1:PORT`).
    pub fn webhook_address(&self) -> SocketAddr {
        self.webhook
    }

    /// Stops every task and the webhook server.
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh control plane with the simulator running and a scenario loaded: what a test of the
/// plugins starts from. Dropping it stops the simulator, then the control plane.
#[derive(Debug)]
pub struct SimulatedCluster {
    // Field order is drop order: the simulator stops before the API server goes away.
    simulator: Simulator,
    plane: ControlPlane,
    load_time: Duration,
}

impl SimulatedCluster {
    /// Starts a control plane with the scenario's CRDs, the simulator with three nodes, and loads
    /// `scenario` (see [`scenario::names`]).
    pub async fn start(scenario: &str) -> Result<SimulatedCluster, Error> {
        SimulatedCluster::start_with(scenario, Duration::ZERO).await
    }

    /// [`SimulatedCluster::start`] with pods taking `pod_startup` to become Ready.
    pub async fn start_with(scenario: &str, pod_startup: Duration) -> Result<SimulatedCluster, Error> {
        let scenario = Scenario::named(scenario)?;
        let plane = ControlPlane::start(PlaneOptions { crds: scenario.crds.clone() }).await?;
        let options =
            Options { kubelet_version: scenario.platform.kubelet_version(), pod_startup, ..Options::default() };
        let started = Instant::now();
        let simulator = Simulator::start(&plane, &options).await?;
        scenario.load(&plane.client().await?).await?;
        Ok(SimulatedCluster { simulator, plane, load_time: started.elapsed() })
    }

    pub fn plane(&self) -> &ControlPlane {
        &self.plane
    }

    /// A cluster-admin client.
    pub async fn client(&self) -> Result<Client, Error> {
        Ok(self.plane.client().await?)
    }

    pub fn simulator(&mut self) -> &mut Simulator {
        &mut self.simulator
    }

    /// How long starting the simulator and loading the scenario took (the control plane's own
    /// start is not included).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}
