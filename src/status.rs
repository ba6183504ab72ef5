//! placeholder
use crate::journal::{Journal, JournalError};
use crate::playbook::Playbook;
#[derive(serde::Serialize)]
pub struct StatusView {}
pub fn status(
    _pb: &Playbook,
    _j: Option<&Journal>,
    _now: jiff::Timestamp,
    _h: &str,
) -> Result<StatusView, JournalError> {
    Ok(StatusView {})
}
pub fn render_status_text(_v: &StatusView, _pb: &Playbook) -> String {
    String::new()
}
