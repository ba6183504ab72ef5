//! The page, the JSON status of every cutover or one, and the report, over HTTP.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::model::read_status;
use super::App;
use crate::journal::Journal;
use crate::report::{self, ReportFormat};

pub(super) const PAGE: &str = include_str!("page.html");

pub(super) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub(super) fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body + "\n",
    )
        .into_response()
}

pub(super) fn error_json(status: StatusCode, message: &str) -> Response {
    json_response(status, serde_json::json!({ "error": message }).to_string())
}

/// Runs blocking journal reads off the server's thread.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Every cutover's status, as `runner status --format json` prints each.
pub(super) async fn api_status(State(app): State<Arc<App>>) -> Response {
    let read = blocking(move || {
        app.cutovers
            .iter()
            .map(|c| read_status(c, &app.clock, &app.host))
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    match read {
        Some(Ok(views)) => match serde_json::to_string_pretty(&views) {
            Ok(s) => json_response(StatusCode::OK, s),
            Err(e) => error_json(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Some(Err(e)) => error_json(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        None => error_json(StatusCode::INTERNAL_SERVER_ERROR, "the reader stopped"),
    }
}

/// A cutover by 1-based position, playbook name or file stem.
pub(super) fn find(app: &App, which: &str) -> Option<usize> {
    if let Ok(n) = which.parse::<usize>() {
        return (1..=app.cutovers.len()).contains(&n).then(|| n - 1);
    }
    app.cutovers.iter().position(|c| {
        c.playbook.name == which || c.playbook.path.file_stem().is_some_and(|s| s == which)
    })
}

pub(super) async fn api_status_one(
    State(app): State<Arc<App>>,
    UrlPath(which): UrlPath<String>,
) -> Response {
    let Some(i) = find(&app, &which) else {
        return error_json(
            StatusCode::NOT_FOUND,
            &format!("no cutover {which:?}: use its position from 1, its name or its file name"),
        );
    };
    match blocking(move || read_status(&app.cutovers[i], &app.clock, &app.host)).await {
        Some(Ok(view)) => match serde_json::to_string_pretty(&view) {
            Ok(s) => json_response(StatusCode::OK, s),
            Err(e) => error_json(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Some(Err(e)) => error_json(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        None => error_json(StatusCode::INTERNAL_SERVER_ERROR, "the reader stopped"),
    }
}

/// What the page shows (status, schedule, window events), as last published.
pub(super) async fn api_page(State(app): State<Arc<App>>) -> Response {
    let snap = app.snapshot.borrow().clone();
    let parts: Vec<&str> = snap.iter().map(|j| j.as_str()).collect();
    json_response(StatusCode::OK, format!("[{}]", parts.join(",")))
}

pub(super) async fn report_page(
    State(app): State<Arc<App>>,
    UrlPath(which): UrlPath<String>,
) -> Response {
    let Some(i) = find(&app, &which) else {
        return (StatusCode::NOT_FOUND, format!("no cutover {which:?}\n")).into_response();
    };
    let read = blocking(move || {
        let c = &app.cutovers[i];
        match Journal::open_read_only(&c.state) {
            Ok(Some(j)) => report::report(&c.playbook, &j, &c.runs_dir, ReportFormat::Html)
                .map_err(|e| e.to_string()),
            Ok(None) => Err(format!(
                "no journal at {}: the playbook has not been applied yet",
                c.state.display()
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    match read {
        Some(Ok(html)) => Html(html).into_response(),
        Some(Err(e)) => (StatusCode::NOT_FOUND, e + "\n").into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "the reader stopped\n").into_response(),
    }
}
