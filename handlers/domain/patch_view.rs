//! What people are shown of a run's patch level: the facts the approval
//! page, the approval email and the Teams card list (the evidence and its
//! hash, the OS build, the cumulative update, what the release fixes since
//! the previous one, anything missing, "patch level not verified"), and the
//! alert they show first. Pure: from the run's record.

use super::evidence::EvidenceRecord;
use super::patch_gate::os_build_fact;
use super::run::Run;

/// The build's evidence record, when the template asked for one.
fn evidence_record(run: &Run) -> Option<&EvidenceRecord> {
    run.build.as_ref().and_then(|b| b.evidence.as_deref())
}

/// The run's patch facts as (name, value) text; empty for a run whose
/// build collected no evidence and whose image has no `[patch]`.
pub fn facts(run: &Run) -> Vec<(&'static str, String)> {
    let record = evidence_record(run);
    let evidence = record.and_then(EvidenceRecord::evidence);
    let mut facts = Vec::new();
    match record {
        Some(EvidenceRecord::Collected {
            sha256,
            bytes,
            location,
            ..
        }) => facts.push((
            "Patch evidence",
            format!("sha256:{sha256} ({bytes} bytes), kept at {location}"),
        )),
        Some(other) => facts.push(("Patch evidence", other.why_none().unwrap_or_default())),
        None => {}
    }
    match &run.patch {
        Some(patch) => facts.extend(patch.facts(evidence)),
        None => facts.extend(evidence.map(os_build_fact)),
    }
    facts
}

/// What an approver must read first about the run's patch level: "patch
/// level not verified", or a failed gate; `None` otherwise.
pub fn alert(run: &Run) -> Option<String> {
    run.patch.as_ref().and_then(|p| p.alert())
}
