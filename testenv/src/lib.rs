//! A real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager
//! from the upstream Go modules (see `testenv/go`), each a separate process on loopback ports, with
//! TLS, client-certificate authentication, RBAC and the mesh CRDs installed.
//!
//! A test binary shares one control plane ([`ControlPlane::shared`]) and each test creates its
//! own namespaces ([`ControlPlane::namespace`]), so tests run in parallel. Processes die with the
//! test process (see [`process`]); the temporary directory is removed at exit.

pub mod binary;
pub mod crds;
pub mod faults;
pub mod objects;
pub mod pki;
pub mod process;

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub use crds::CrdSet;
pub use faults::{Action, Fault, FaultProxy, RequestRecord};
pub use pki::Pki;

/// The user name of the view-only identity.
pub const VIEWER_USER: &str = "oc-ambient-viewer";
/// Kubeconfig context names.
pub const ADMIN_CONTEXT: &str = "admin";
pub const VIEWER_CONTEXT: &str = "viewer";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("kube-testenv binary: {0}")]
    Binary(String),
    #[error("certificates: {0}")]
    Pki(String),
    #[error("{component} did not become ready in {seconds}s; last log lines:\n{log}")]
    NotReady { component: String, seconds: u64, log: String },
    #[error("{component} exited early ({status}); last log lines:\n{log}")]
    Exited { component: String, status: String, log: String },
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("fixtures: {0}")]
    Fixtures(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("fault rule: {0}")]
    FaultRule(#[from] regex::Error),
}

impl Error {
    /// Whether a component failed because another process had taken its port.
    fn is_port_taken(&self) -> bool {
        matches!(self, Error::Exited { log, .. } | Error::NotReady { log, .. } if log.contains("address already in use"))
    }
}

/// What to install into a new control plane.
#[derive(Debug, Clone)]
pub struct Options {
    pub crds: CrdSet,
}

impl Default for Options {
    fn default() -> Self {
        Options { crds: CrdSet::All }
    }
}

/// A running control plane. Dropping it stops the processes and removes its directory.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
    server: String,
    pki: Pki,
    binary: PathBuf,
    components: Mutex<Vec<Component>>,
}

/// One process of the control plane, with the flags it was started with (to restart it).
#[derive(Debug)]
struct Component {
    name: String,
    args: Vec<String>,
    child: Child,
}

const APISERVER: &str = "kube-apiserver";

static NAMESPACE_COUNTER: AtomicUsize = AtomicUsize::new(0);

const DIR_PREFIX: &str = "oc-ambient-testenv-";

/// Removes directories of control planes whose test process is gone (killed before its exit
/// handler ran; its processes died with it through PDEATHSIG).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix(DIR_PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Ports below Linux's default ephemeral range (32768-60999). A port picked by binding to port 0
/// comes from that range, and once released it can be taken by any outgoing connection before
/// the component binds it.
const LISTEN_PORTS: std::ops::Range<u16> = 20000..32000;

/// A loopback port for a component to listen on: random in [`LISTEN_PORTS`], free when picked,
/// and never handed out twice by this process. Another process can still take it before the
/// component binds it; [`ControlPlane::start`] then starts again on other ports.
fn free_port() -> Result<u16, Error> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let random = RandomState::new();
    let span = u64::from(LISTEN_PORTS.end - LISTEN_PORTS.start);
    for attempt in 0u64..1000 {
        let offset = u16::try_from(random.hash_one(attempt) % span).unwrap_or_default();
        let port = LISTEN_PORTS.start + offset;
        let fresh = HANDED_OUT.lock().map_err(|_| Error::Binary("port registry poisoned".into()))?.insert(port);
        if fresh && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::Io {
        what: format!("find a free loopback port in {LISTEN_PORTS:?}"),
        source: std::io::ErrorKind::AddrInUse.into(),
    })
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|source| Error::Io { what: format!("write {}", path.display()), source })
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// The root of the shared fixtures: `$OC_AMBIENT_FIXTURES`, else `../shared/fixtures` beside the
/// checkout.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("OC_AMBIENT_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("..").join("shared").join("fixtures"),
    }
}

/// Tells the developer running the tests why a run is slow, on stderr. Test infrastructure, not
/// plugin output (which goes through the plugins' printer), so it may print directly.
#[allow(clippy::print_stderr)]
fn tell_developer(message: &str) {
    eprintln!("oc-ambient-testenv: {message}");
}

/// A client for `context` of the kubeconfig at `path`.
pub async fn client_from(path: &Path, context: &str) -> Result<Client, Error> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|err| Error::Binary(err.to_string()))?;
    let options = KubeConfigOptions { context: Some(context.into()), ..Default::default() };
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|err| Error::Binary(err.to_string()))?;
    Ok(Client::try_from(config)?)
}

/// The workspace root of this checkout.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

impl ControlPlane {
    /// Starts a control plane in a fresh temporary directory; dropping a half-started one stops
    /// what it started.
    async fn start_once(options: &Options) -> Result<Self, Error> {
        let binary = tokio::task::spawn_blocking(binary::ensure_binary)
            .await
            .map_err(|err| Error::Binary(err.to_string()))??;
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            NAMESPACE_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|source| Error::Io { what: format!("create {}", dir.display()), source })?;
        let mut plane = ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            server: String::new(),
            pki: Pki::generate()?,
            binary,
            components: Mutex::new(Vec::new()),
        };
        plane.boot(options).await?;
        Ok(plane)
    }

    /// Starts a new control plane; when a component finds its port taken by another process
    /// (possible between picking a free port and binding it), starts again on other ports.
    pub async fn start(options: Options) -> Result<Self, Error> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            match Self::start_once(&options).await {
                Err(err) if attempt < ATTEMPTS && err.is_port_taken() => {
                    tell_developer(&format!(
                        "control plane start {attempt} of {ATTEMPTS}: a port was taken, retrying: {err}"
                    ));
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn boot(&mut self, options: &Options) -> Result<(), Error> {
        let dir = self.dir.clone();
        let file = |name: &str| dir.join(name);
        write(&file("ca.crt"), &self.pki.ca.cert)?;
        write(&file("ca.key"), &self.pki.ca.key)?;
        write(&file("serving.crt"), &self.pki.serving.cert)?;
        write(&file("serving.key"), &self.pki.serving.key)?;
        write(&file("admin.crt"), &self.pki.admin.cert)?;
        write(&file("admin.key"), &self.pki.admin.key)?;
        write(&file("viewer.crt"), &self.pki.viewer.cert)?;
        write(&file("viewer.key"), &self.pki.viewer.key)?;
        write(&file("sa.key"), &self.pki.service_account_key)?;
        write(&file("sa.pub"), &self.pki.service_account_public)?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let api_port = free_port()?;
        self.server = format!("https://127.0.0.1:{api_port}");
        write(&self.kubeconfig, &self.kubeconfig_text(&self.server))?;

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        self.spawn(
            "etcd",
            &[
                "etcd".into(),
                format!("--data-dir={}", file("etcd").display()),
                format!("--listen-client-url={etcd_url}"),
                format!("--listen-peer-url=http://127.0.0.1:{etcd_peer_port}"),
            ],
        )?;
        self.wait_for_port("etcd", etcd_port, Duration::from_secs(30)).await?;

        let path = |name: &str| file(name).display().to_string();
        self.spawn(
            APISERVER,
            &[
                "kube-apiserver".into(),
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", path("apiserver-certs")),
                format!("--tls-cert-file={}", path("serving.crt")),
                format!("--tls-private-key-file={}", path("serving.key")),
                format!("--client-ca-file={}", path("ca.crt")),
                format!("--service-account-key-file={}", path("sa.pub")),
                format!("--service-account-signing-key-file={}", path("sa.key")),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                "--authorization-mode=RBAC".into(),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                "--allow-privileged=true".into(),
                "--endpoint-reconciler-type=none".into(),
                "--profiling=false".into(),
                // The simulated kubelets serve on loopback, named by each node's InternalDNS
                // address; never the nodes' fictitious InternalIPs or host names.
                "--kubelet-preferred-address-types=InternalDNS".into(),
            ],
        )?;
        self.wait_for_apiserver(Duration::from_secs(90)).await?;

        self.spawn(
            "kube-controller-manager",
            &[
                "kube-controller-manager".into(),
                format!("--kubeconfig={}", self.kubeconfig.display()),
                "--controllers=*,-nodelifecycle".into(),
                format!("--service-account-private-key-file={}", path("sa.key")),
                format!("--root-ca-file={}", path("ca.crt")),
                format!("--cluster-signing-cert-file={}", path("ca.crt")),
                format!("--cluster-signing-key-file={}", path("ca.key")),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--concurrent-deployment-syncs=10".into(),
                "--concurrent-replicaset-syncs=10".into(),
                "--concurrent-gc-syncs=10".into(),
                "--concurrent-namespace-syncs=10".into(),
                "--profiling=false".into(),
            ],
        )?;

        let client = self.client().await?;
        self.grant_viewer(&client).await?;
        crds::install(&client, &fixtures_dir(), &options.crds).await?;
        self.wait_for_controllers(&client, Duration::from_secs(60)).await?;
        Ok(())
    }

    /// Starts a process of the multi-call binary; its output is appended to `<name>.log`, so a
    /// restarted component keeps the log of its earlier run.
    fn launch(&self, name: &str, args: Vec<String>) -> Result<Component, Error> {
        let log_path = self.dir.join(format!("{name}.log"));
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| Error::Io { what: format!("open {}", log_path.display()), source })?;
        let log_err = log.try_clone().map_err(|source| Error::Io { what: "dup log".into(), source })?;
        let mut command = Command::new(&self.binary);
        command.args(&args).stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = process::spawn_tied(command)
            .map_err(|source| Error::Io { what: format!("start {name} ({})", self.binary.display()), source })?;
        Ok(Component { name: name.to_string(), args, child })
    }

    fn components(&self) -> Result<std::sync::MutexGuard<'_, Vec<Component>>, Error> {
        self.components.lock().map_err(|_| Error::Binary("poisoned".into()))
    }

    fn spawn(&self, name: &str, args: &[String]) -> Result<(), Error> {
        let component = self.launch(name, args.to_vec())?;
        self.components()?.push(component);
        Ok(())
    }

    /// Stops the API server and starts it again with the same flags on the same port, then waits
    /// until it is ready; etcd keeps the data. Clients see refused connections meanwhile. Restart
    /// only a plane of your own ([`ControlPlane::start`]), never [`ControlPlane::shared`], whose
    /// other tests would fail.
    pub async fn restart_apiserver(&self) -> Result<(), Error> {
        let (position, old) = {
            let mut components = self.components()?;
            let position = components
                .iter()
                .position(|component| component.name == APISERVER)
                .ok_or_else(|| Error::Binary(format!("{APISERVER} is not running")))?;
            (position, components.remove(position))
        };
        let Component { name, args, mut child } = old;
        tokio::task::spawn_blocking(move || process::stop(&mut child))
            .await
            .map_err(|err| Error::Binary(err.to_string()))?;
        let restarted = self.launch(&name, args)?;
        {
            // Back in its place, so `stop` still stops the components in reverse start order.
            let mut components = self.components()?;
            let position = position.min(components.len());
            components.insert(position, restarted);
        }
        self.wait_for_apiserver(Duration::from_secs(90)).await
    }

    fn check_alive(&self, component: &str) -> Result<(), Error> {
        let mut components = self.components()?;
        for Component { name, child, .. } in components.iter_mut() {
            if name == component
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::Exited {
                    component: component.into(),
                    status: status.to_string(),
                    log: log_tail(&self.dir.join(format!("{component}.log"))),
                });
            }
        }
        Ok(())
    }

    fn not_ready(&self, component: &str, timeout: Duration) -> Error {
        Error::NotReady {
            component: component.into(),
            seconds: timeout.as_secs(),
            log: log_tail(&self.dir.join(format!("{component}.log"))),
        }
    }

    async fn wait_for_port(&self, component: &str, port: u16, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.check_alive(component)?;
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(self.not_ready(component, timeout))
    }

    async fn wait_for_apiserver(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let client = self.client().await?;
        while Instant::now() < deadline {
            self.check_alive(APISERVER)?;
            let request =
                http::Request::get("/readyz").body(Vec::new()).map_err(|err| Error::Binary(err.to_string()))?;
            if let Ok(text) = client.request_text(request).await
                && text.trim() == "ok"
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(self.not_ready(APISERVER, timeout))
    }

    /// The service-account controller creating `default` in `default` proves the controller
    /// manager runs its controllers.
    async fn wait_for_controllers(&self, client: &Client, timeout: Duration) -> Result<(), Error> {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.check_alive("kube-controller-manager")?;
            if accounts.get_opt("default").await?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(self.not_ready("kube-controller-manager", timeout))
    }

    /// RBAC for the view-only identity: the built-in `view` role plus read access to the mesh,
    /// Gateway API, OpenShift and OLM kinds (which `view` does not aggregate).
    async fn grant_viewer(&self, client: &Client) -> Result<(), Error> {
        let roles: Api<ClusterRole> = Api::all(client.clone());
        let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
        let mesh_reader = ClusterRole {
            metadata: ObjectMeta { name: Some("oc-ambient-mesh-reader".into()), ..Default::default() },
            rules: Some(vec![PolicyRule {
                api_groups: Some(
                    [
                        "sailoperator.io",
                        "networking.istio.io",
                        "security.istio.io",
                        "telemetry.istio.io",
                        "extensions.istio.io",
                        "gateway.networking.k8s.io",
                        "operators.coreos.com",
                        "config.openshift.io",
                        "operator.openshift.io",
                        "apiextensions.k8s.io",
                        "monitoring.coreos.com",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                resources: Some(vec!["*".into()]),
                verbs: ["get", "list", "watch"].map(String::from).to_vec(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        roles.create(&PostParams::default(), &mesh_reader).await?;
        for role in ["view", "oc-ambient-mesh-reader"] {
            let binding = ClusterRoleBinding {
                metadata: ObjectMeta { name: Some(format!("{VIEWER_USER}-{role}")), ..Default::default() },
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: role.into(),
                },
                subjects: Some(vec![Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "User".into(),
                    name: VIEWER_USER.into(),
                    ..Default::default()
                }]),
            };
            bindings.create(&PostParams::default(), &binding).await?;
        }
        Ok(())
    }

    /// A kubeconfig with this plane's CA and identities, for the API server or a proxy at `server`.
    fn kubeconfig_text(&self, server: &str) -> String {
        let file = |name: &str| self.dir.join(name).display().to_string();
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: admin
  user:
    client-certificate: {admin_crt}
    client-key: {admin_key}
- name: viewer
  user:
    client-certificate: {viewer_crt}
    client-key: {viewer_key}
contexts:
- name: {ADMIN_CONTEXT}
  context:
    cluster: testenv
    user: admin
    namespace: default
- name: {VIEWER_CONTEXT}
  context:
    cluster: testenv
    user: viewer
    namespace: default
current-context: {ADMIN_CONTEXT}
",
            ca = file("ca.crt"),
            admin_crt = file("admin.crt"),
            admin_key = file("admin.key"),
            viewer_crt = file("viewer.crt"),
            viewer_key = file("viewer.key"),
        )
    }

    /// The kubeconfig with an `admin` (current) and a `viewer` context.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The control plane's working directory (logs, certificates, etcd data).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A client for `context` (build one per test: a client belongs to the runtime that made it).
    pub async fn client_for(&self, context: &str) -> Result<Client, Error> {
        client_from(&self.kubeconfig, context).await
    }

    /// A cluster-admin client.
    pub async fn client(&self) -> Result<Client, Error> {
        self.client_for(ADMIN_CONTEXT).await
    }

    /// A client for the view-only identity.
    pub async fn viewer_client(&self) -> Result<Client, Error> {
        self.client_for(VIEWER_CONTEXT).await
    }

    /// Creates a namespace with a unique name starting with `prefix`, for one test.
    pub async fn namespace(&self, client: &Client, prefix: &str) -> Result<String, Error> {
        let name =
            format!("{prefix}-{}-{}", std::process::id() % 10_000, NAMESPACE_COUNTER.fetch_add(1, Ordering::Relaxed));
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace =
            Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() };
        namespaces.create(&PostParams::default(), &namespace).await?;
        Ok(name)
    }

    /// Process ids of etcd, the API server and the controller manager.
    pub fn pids(&self) -> Vec<u32> {
        self.components
            .lock()
            .map(|components| components.iter().map(|component| component.child.id()).collect())
            .unwrap_or_default()
    }

    /// Stops every process and removes the directory. Safe to call more than once.
    pub fn stop(&self) {
        if let Ok(mut components) = self.components.lock() {
            // Controller manager first, etcd last, as a cluster shuts down.
            while let Some(mut component) = components.pop() {
                process::stop(&mut component.child);
            }
        }
        if std::env::var_os("OC_AMBIENT_KEEP_TESTENV").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The control plane shared by every test of this test binary, started on first use and
    /// stopped when the process exits.
    pub fn shared() -> Result<&'static ControlPlane, String> {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        let plane = SHARED.get_or_init(|| {
            let started = std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .map_err(|err| err.to_string())?;
                runtime.block_on(ControlPlane::start(Options::default())).map_err(|err| err.to_string())
            })
            .join()
            .unwrap_or_else(|_| Err("control plane start panicked".into()));
            if started.is_ok() {
                register_exit_cleanup();
            }
            started
        });
        plane.as_ref().map_err(Clone::clone)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

#[allow(unsafe_code)]
fn register_exit_cleanup() {
    extern "C" fn stop_shared() {
        if let Ok(plane) = ControlPlane::shared() {
            plane.stop();
        }
    }
    // SAFETY: atexit(3) with a plain extern "C" function; registered once (under the OnceLock).
    unsafe {
        libc::atexit(stop_shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_and_never_handed_out_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        assert!(ports.iter().all(|port| LISTEN_PORTS.contains(port)), "{ports:?}");
        assert_eq!(ports.iter().collect::<BTreeSet<_>>().len(), ports.len(), "a port handed out twice");
    }

    #[test]
    fn only_a_taken_port_counts_as_a_port_collision() {
        let exited =
            |log: &str| Error::Exited { component: "etcd".into(), status: "exit status: 1".into(), log: log.into() };
        assert!(exited("listen tcp 127.0.0.1:35759: bind: address already in use").is_port_taken());
        assert!(!exited("no space left on device").is_port_taken());
    }
}
