//! The JSON Schema of the playbook format, printed by `runner schema` for editors
//! (e.g. the YAML language server's `# yaml-language-server: $schema=...`).

use super::compose::RawCustomer;
use super::raw::RawPlaybook;

/// A file runner reads: a playbook (or a procedure, which has the same keys), or a customer
/// file naming a procedure.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum PlaybookFile {
    Playbook(RawPlaybook),
    Customer(RawCustomer),
}

/// The schema as pretty JSON.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(PlaybookFile);
    schema.insert(
        "title".into(),
        serde_json::Value::String("runner playbook or customer file (format v1)".into()),
    );
    serde_json::to_string_pretty(&schema).unwrap_or_else(|_| "{}".to_string())
}

#[cfg(test)]
mod tests {
    use super::super::structure;
    use serde_json::Value;

    fn props<'a>(schema: &'a Value, def: Option<&str>) -> Vec<&'a str> {
        let obj = match def {
            None => schema,
            Some(name) => &schema["$defs"][name],
        };
        let mut keys: Vec<&str> = obj["properties"]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys
    }

    fn sorted(list: &[&'static str]) -> Vec<&'static str> {
        let mut v = list.to_vec();
        v.sort_unstable();
        v
    }

    /// The shape check's key lists and the serde types must never drift apart.
    #[test]
    fn structure_key_lists_match_the_schema() {
        let schema: Value = serde_json::from_str(&super::json_schema()).unwrap();
        assert_eq!(
            props(&schema, Some("RawPlaybook")),
            sorted(structure::TOP_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawCustomer")),
            sorted(super::super::compose::CUSTOMER_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawOverride")),
            sorted(super::super::compose::OVERRIDE_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawWindow")),
            sorted(structure::WINDOW_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawHours")),
            sorted(structure::HOURS_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawTarget")),
            sorted(structure::TARGET_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawSecretRef")),
            sorted(structure::SECRET_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawStep")),
            sorted(structure::STEP_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawUpload")),
            sorted(structure::UPLOAD_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawCopy")),
            sorted(structure::COPY_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawFetch")),
            sorted(structure::FETCH_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawDeadline")),
            sorted(structure::DEADLINE_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawReboot")),
            sorted(structure::REBOOT_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawSink")),
            sorted(structure::SINK_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawEmail")),
            sorted(structure::EMAIL_KEYS)
        );
        assert_eq!(
            props(&schema, Some("RawSmtp")),
            sorted(structure::SMTP_KEYS)
        );
    }
}
