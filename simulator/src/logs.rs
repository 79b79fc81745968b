//! The kubelets' container-log endpoint, so that the real API server serves `pods/log` as on a
//! cluster: `GET /containerLogs/{namespace}/{pod}/{container}` with the `tailLines` and
//! `limitBytes` the API server passes on. The API server has already checked that the pod and
//! container exist (and the caller's `pods/log` permission); it reaches every simulated node at
//! `127.0.0.1` on this server's port ([`crate::kubelet::create_nodes`] reports both in the node
//! status). Logs are deterministic: [`LINES`] numbered lines naming the container.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};

/// How many lines every container has logged.
pub const LINES: usize = 200;

/// The log of `container` in `namespace/pod`, whole.
pub fn log_text(namespace: &str, pod: &str, container: &str) -> String {
    (1..=LINES).map(|line| format!("{container} {namespace}/{pod}: simulated log line {line}\n")).collect()
}

/// The log as the request's path and query ask for it; None for another path.
pub fn answer(path: &str, query: Option<&str>) -> Option<String> {
    let mut parts = path.strip_prefix("/containerLogs/")?.split('/');
    let (namespace, pod, container) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let parameter = |name: &str| {
        query?.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.parse::<usize>().ok())
    };
    let text = log_text(namespace, pod, container);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let tail = parameter("tailLines").unwrap_or(lines.len()).min(lines.len());
    let mut text: String = lines[lines.len() - tail..].concat();
    if let Some(limit) = parameter("limitBytes") {
        let mut end = limit.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Some(text)
}

pub async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (status, body) = match answer(request.uri().path(), request.uri().query()) {
        Some(text) => (StatusCode::OK, text),
        None => (StatusCode::NOT_FOUND, String::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_honour_tail_lines_and_limit_bytes() {
        let whole = answer("/containerLogs/ns/pod-1/app", None).unwrap();
        assert_eq!(whole.lines().count(), LINES);
        let tail = answer("/containerLogs/ns/pod-1/app", Some("tailLines=3&follow=false")).unwrap();
        assert_eq!(
            tail,
            "app ns/pod-1: simulated log line 198\napp ns/pod-1: simulated log line 199\napp ns/pod-1: simulated log line 200\n"
        );
        assert_eq!(answer("/containerLogs/ns/pod-1/app", Some("tailLines=3&limitBytes=5")).unwrap(), "app n");
        assert_eq!(answer("/exec/ns/pod-1/app", None), None);
        assert_eq!(answer("/containerLogs/ns/pod-1", None), None);
    }
}
