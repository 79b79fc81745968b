//! Loading a [`Snapshot`] from a live cluster: one discovery pass, then one paginated list per
//! kind (per namespace when the scope is a few namespaces), a handful at a time.
//!
//! Discovery uses the aggregated discovery document (`/api` and `/apis` with
//! `apidiscovery.k8s.io/v2`, GA since Kubernetes 1.30, so on every OpenShift we support): two
//! requests describe every served kind, where per-group discovery would cost one request per
//! group version. Never one request per object: on a cluster with thousands of pods the cost is
//! the number of kinds times the number of pages.
//!
//! Each page is decoded as it arrives, object by object, keeping the [`Fields`] the caller asks
//! for (the check keeps what the suite reads, see [`crate::fields`]), and its text is dropped
//! before the next page is asked for: the loader holds one page of text per list in flight and
//! one decoded copy of each object, never a whole-cluster JSON tree. Kinds of which only names and
//! labels are read are listed as `PartialObjectMetadataList`, so their content is not even sent.
//!
//! # Freshness
//!
//! [`Freshness::Cached`] (the read-only check) lists with `resourceVersion=0` and
//! `resourceVersionMatch=NotOlderThan`: the API server answers from its watch cache without asking
//! etcd for its current revision and without waiting for the cache to catch up to it. The trade:
//! a list may miss writes of the last moments (the cache's lag behind etcd, normally milliseconds,
//! longer while an API server is overloaded or just restarted), and two API servers behind a load
//! balancer may answer from different points in time. The check is a report on a mesh that
//! changes anyway while it runs (kinds are listed one after the other, never at one revision);
//! the cost of a lagging cache is a finding one moment old. The mutating plugins read
//! [`Freshness::Latest`] (a consistent list, the default): they plan from what they read, gate the
//! plan against it and resume from their own journal, so they must see their own last writes.

use futures::StreamExt;
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::TypeMeta;
use serde::Deserialize;

use crate::client::Connection;
use crate::error::{ApiError, Request, one_line};
use crate::fields::{self, Fields};
use crate::kinds::{ALL, Kind, KindInfo};
use crate::snapshot::{Coverage, Snapshot, Source};

/// Where to list namespaced kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListScope {
    /// Cluster-wide lists.
    AllNamespaces,
    /// One list per namespace (for users whose rights end at their namespaces).
    Namespaces(Vec<String>),
}

/// How recent a list must be (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A consistent read: every write acknowledged before the list is in it.
    Latest,
    /// Whatever the API server's watch cache holds (`resourceVersion=0`, `NotOlderThan`).
    Cached,
}

/// Tuning of the live loader.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub scope: ListScope,
    pub page_size: u32,
    pub concurrency: usize,
    /// How much of each object to keep.
    pub fields: Fields,
    pub freshness: Freshness,
}

impl Default for LoadOptions {
    /// Whole objects, read consistently: what the mutating plugins need.
    fn default() -> Self {
        LoadOptions {
            scope: ListScope::AllNamespaces,
            page_size: 500,
            concurrency: 6,
            fields: Fields::All,
            freshness: Freshness::Latest,
        }
    }
}

impl LoadOptions {
    /// What the read-only check reads: the fields the suite reads, from the watch cache.
    pub fn for_check(scope: ListScope) -> Self {
        LoadOptions { scope, fields: Fields::Read, freshness: Freshness::Cached, ..LoadOptions::default() }
    }
}

pub use oc_ambient_core::snapshot::Served;

#[derive(Deserialize)]
struct DiscoveryList {
    #[serde(default)]
    items: Vec<DiscoveryGroup>,
}

#[derive(Deserialize)]
struct DiscoveryGroup {
    #[serde(default)]
    metadata: DiscoveryMeta,
    #[serde(default)]
    versions: Vec<DiscoveryVersion>,
}

#[derive(Deserialize, Default)]
struct DiscoveryMeta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct DiscoveryVersion {
    version: String,
    #[serde(default)]
    resources: Vec<DiscoveryResource>,
}

#[derive(Deserialize)]
struct DiscoveryResource {
    #[serde(rename = "responseKind")]
    response_kind: Option<DiscoveryKind>,
}

#[derive(Deserialize)]
struct DiscoveryKind {
    kind: String,
}

const AGGREGATED_DISCOVERY: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// What a mutating command starts from: its printer, its connection, and the whole cluster read
/// once (its plan is computed from this one snapshot, and gated against it).
pub struct Session {
    pub printer: crate::printer::Printer,
    pub connection: Connection,
    pub snapshot: Snapshot,
}

/// Connects as `global` says and reads every kind the suite knows, with progress on stderr.
pub async fn open_session(global: &crate::cli::GlobalArgs) -> Result<Session, crate::error::Error> {
    let printer = crate::printer::Printer::new(global);
    let connection = crate::client::connect(global, &printer).await?;
    let snapshot = load_with_progress(&connection, &printer, &LoadOptions::default()).await?;
    Ok(Session { printer, connection, snapshot })
}

/// [`load`] with a spinner on stderr naming the server.
pub async fn load_with_progress(
    connection: &Connection,
    printer: &crate::printer::Printer,
    options: &LoadOptions,
) -> Result<Snapshot, ApiError> {
    let spinner = printer.spinner(&format!("reading {}", connection.server));
    let snapshot = load(connection, options).await;
    spinner.finish_and_clear();
    snapshot
}

/// Every served kind and its versions, from the aggregated discovery documents.
pub async fn discover(connection: &Connection) -> Result<Served, ApiError> {
    let mut served = Served::new();
    for path in ["/api", "/apis"] {
        let discovery = Request::new("get", &format!("discovery {path}"));
        // A GET with a constant path and header cannot fail to build.
        let request = http::Request::get(path)
            .header(http::header::ACCEPT, AGGREGATED_DISCOVERY)
            .body(Vec::new())
            .map_err(|err| ApiError::Failed {
                request: Box::new(discovery.clone()),
                source: Box::new(kube::Error::HttpError(err)),
            })?;
        let text =
            connection.client.request_text(request).await.map_err(|err| ApiError::from_kube(err, discovery, None))?;
        let list: DiscoveryList = serde_json::from_str(&text)
            .map_err(|source| ApiError::NoAggregatedDiscovery { path: path.into(), source })?;
        for group in list.items {
            for version in group.versions {
                for resource in version.resources {
                    if let Some(kind) = resource.response_kind {
                        served
                            .entry((group.metadata.name.clone(), kind.kind))
                            .or_default()
                            .push(version.version.clone());
                    }
                }
            }
        }
    }
    Ok(served)
}

/// The version of `info` to read, if the server serves one the suite understands.
pub fn served_version<'a>(info: &'a KindInfo, served: &Served) -> Option<&'a str> {
    let versions = served.get(&(info.group.to_string(), info.name.to_string()))?;
    info.versions.iter().copied().find(|version| versions.iter().any(|served| served == version))
}

struct ListJob {
    info: &'static KindInfo,
    version: &'static str,
    namespace: Option<String>,
    /// Get this one object instead of listing.
    name: Option<String>,
}

/// Reads every kind of the table into a snapshot.
pub async fn load(connection: &Connection, options: &LoadOptions) -> Result<Snapshot, ApiError> {
    let served = discover(connection).await?;
    let mut snapshot = Snapshot::new(Source::Live { server: connection.server.clone() });
    snapshot.served = Some(served.clone());
    // Cluster-scoped kinds first: the control plane resources say which namespaces hold the
    // cluster-level facts (operator, ztunnel, remote secrets) that a `-n` check still needs.
    let mut cluster_jobs = Vec::new();
    let mut namespaced = Vec::new();
    for info in ALL {
        let Some(version) = served_version(info, &served) else {
            snapshot.set_coverage(info.kind, Coverage::NotServed);
            continue;
        };
        snapshot.set_coverage(info.kind, Coverage::Listed);
        match (&options.scope, info.namespaced) {
            // Namespace admins may get their namespaces but not list all of them.
            (ListScope::Namespaces(namespaces), false) if info.kind == Kind::Namespace => {
                for namespace in namespaces {
                    cluster_jobs.push(ListJob { info, version, namespace: None, name: Some(namespace.clone()) });
                }
            }
            (ListScope::Namespaces(_), true) => namespaced.push((info, version)),
            _ => cluster_jobs.push(ListJob { info, version, namespace: None, name: None }),
        }
    }
    run_jobs(connection, cluster_jobs, options, &mut snapshot).await?;
    if let ListScope::Namespaces(selected) = &options.scope {
        let mut namespaces: std::collections::BTreeSet<String> = selected.iter().cloned().collect();
        namespaces.extend(crate::mesh::infrastructure_namespaces(&snapshot));
        let jobs = namespaced
            .iter()
            .flat_map(|(info, version)| {
                namespaces.iter().map(|namespace| ListJob {
                    info,
                    version,
                    namespace: Some(namespace.clone()),
                    name: None,
                })
            })
            .collect();
        run_jobs(connection, jobs, options, &mut snapshot).await?;
    }
    Ok(snapshot)
}

async fn run_jobs(
    connection: &Connection,
    jobs: Vec<ListJob>,
    options: &LoadOptions,
    snapshot: &mut Snapshot,
) -> Result<(), ApiError> {
    let results: Vec<(Kind, Result<Vec<DynamicObject>, ApiError>)> = futures::stream::iter(jobs)
        .map(|job| async move { (job.info.kind, read(connection, &job, options).await) })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    for (kind, result) in results {
        match result {
            Ok(objects) => {
                for object in objects {
                    snapshot.insert(object);
                }
            }
            Err(denied @ ApiError::Forbidden { .. }) => {
                snapshot.notes.push(denied.to_string());
                snapshot.set_coverage(kind, Coverage::Forbidden(denied.to_string()));
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// The API resource of a kind at a served version.
fn api_resource(info: &KindInfo, version: &str) -> ApiResource {
    let api_version = if info.group.is_empty() { version.to_string() } else { format!("{}/{}", info.group, version) };
    ApiResource {
        group: info.group.into(),
        version: version.into(),
        api_version,
        kind: info.name.into(),
        plural: info.plural.into(),
    }
}

/// One list call of the loader, page by page: what [`load`] sends for a kind, exposed so that a
/// benchmark's floor client can send exactly the same requests.
pub struct ListCall {
    url: String,
    params: ListParams,
    metadata_only: bool,
}

impl ListCall {
    /// The list of `info` (at `version`, in `namespace` or cluster-wide) as `options` ask for it.
    pub fn new(info: &KindInfo, version: &str, namespace: Option<&str>, options: &LoadOptions) -> Self {
        let mut params = ListParams::default().limit(options.page_size);
        if let Some(selector) = info.list_selector {
            params = params.labels(selector);
        }
        if options.freshness == Freshness::Cached {
            params = params.match_any();
        }
        ListCall {
            url: DynamicObject::url_path(&api_resource(info, version), namespace),
            params,
            metadata_only: fields::metadata_only(info.kind, options.fields),
        }
    }

    /// The request of the page after `continue_token` (the first page without one).
    pub fn page(&self, continue_token: Option<&str>) -> Result<http::Request<Vec<u8>>, kube::Error> {
        let mut params = self.params.clone();
        params.continue_token = continue_token.map(str::to_string);
        let request = kube::core::Request::new(&self.url);
        if self.metadata_only { request.list_metadata(&params) } else { request.list(&params) }
            .map_err(kube::Error::BuildRequest)
    }
}

/// Every object of one job: one get, or a list page by page.
async fn read(connection: &Connection, job: &ListJob, options: &LoadOptions) -> Result<Vec<DynamicObject>, ApiError> {
    let info = job.info;
    let resource = api_resource(info, job.version);
    let types = TypeMeta { api_version: resource.api_version.clone(), kind: info.name.into() };
    if let Some(name) = &job.name {
        let api: Api<DynamicObject> = Api::all_with(connection.client.clone(), &resource);
        let found = api
            .get_opt(name)
            .await
            .map_err(|err| ApiError::from_kube(err, Request::new("get", &info.resource()).named(name), None))?;
        return Ok(found
            .map(|mut object| {
                object.types = Some(types);
                object.metadata.managed_fields = None;
                object
            })
            .into_iter()
            .collect());
    }
    let failed = |err: kube::Error| {
        let request = Request::new("list", &info.resource()).in_namespace(job.namespace.as_deref());
        ApiError::from_kube(err, request, info.is_custom().then(|| info.resource()))
    };
    let call = ListCall::new(info, job.version, job.namespace.as_deref(), options);
    let mut objects = Vec::new();
    let mut continue_token = None;
    loop {
        let request = call.page(continue_token.as_deref()).map_err(failed)?;
        let text = connection.client.request_text(request).await.map_err(failed)?;
        let page = fields::decode_page(text.as_bytes(), info.kind, options.fields)
            .map_err(|err| failed(kube::Error::SerdeError(err)))?;
        drop(text);
        for item in page.items {
            let mut object: DynamicObject =
                serde_json::from_value(item).map_err(|err| failed(kube::Error::SerdeError(err)))?;
            object.types = Some(types.clone());
            // Server-side apply bookkeeping is large and never read (pruned already when reading
            // the fields the suite reads).
            object.metadata.managed_fields = None;
            objects.push(object);
        }
        match page.continue_token {
            Some(token) => continue_token = Some(token),
            None => break,
        }
    }
    Ok(objects)
}

/// A short description of what was read, for `-v`.
pub fn summary(snapshot: &Snapshot) -> String {
    let denied: Vec<String> = snapshot
        .kinds()
        .filter(|&(_kind, coverage)| matches!(coverage, Coverage::Forbidden(_)))
        .map(|(kind, _coverage)| kind.name().to_string())
        .collect();
    let mut text = format!("read {} objects", snapshot.len());
    if !denied.is_empty() {
        text.push_str(&format!("; no permission to list {}", one_line(&denied.join(", "))));
    }
    text
}
