//! placeholder
use crate::journal::Journal;
use crate::playbook::Playbook;
pub enum ReportFormat {
    Markdown,
    Html,
    Json,
}
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct ReportError;
pub fn report(
    _pb: &Playbook,
    _j: &Journal,
    _d: &std::path::Path,
    _f: ReportFormat,
) -> Result<String, ReportError> {
    Ok(String::new())
}
