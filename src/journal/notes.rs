//! The keys of attempt notes: small facts the engine writes on an attempt (in the journal
//! before it acts on them) and that the next `apply`, `status` and `report` read back. One
//! place for the names, so that readers need not reach into the engine.

/// Note on a run attempt: its command on the target (`transport::Orphan::to_note`), in the
/// journal before the command is sent (an `sh` command's token, with the attempt itself; a
/// WinRM shell once created), and again, with what more is known (the PID), when its
/// connection was lost mid-command, before reconnecting. So the next `apply` can stop a
/// command that may still run, first, even when the runner that started it died (a power cut)
/// while the link was silently dead.
pub const NOTE_ORPHAN: &str = "orphan";
/// Note on the same attempt once that command is known to be gone: what was found.
pub const NOTE_ORPHAN_SETTLED: &str = "orphan_settled";

/// The attempt note naming a detached job's folder on the target.
pub const NOTE_JOB_DIR: &str = "job_dir";

/// On a `reboot:` step: the target's boot id before the reboot.
pub const NOTE_BOOT_ID: &str = "boot_id_before";
/// On a `reboot:` step: when the reboot was issued.
pub const NOTE_ISSUED: &str = "reboot_issued_at";
/// On a `reboot_on` step: the command's exit code, noted before the reboot begins.
pub const NOTE_EXIT_CODE: &str = "exit_code";
