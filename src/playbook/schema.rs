//! The JSON Schema of the playbook format, printed by `runner schema` for editors
//! (e.g. the YAML language server's `# yaml-language-server: $schema=...`).

use super::raw::RawPlaybook;

/// The schema as pretty JSON.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(RawPlaybook);
    schema.insert(
        "title".into(),
        serde_json::Value::String("runner playbook (format v1)".into()),
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
        assert_eq!(props(&schema, None), sorted(structure::TOP_KEYS));
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
