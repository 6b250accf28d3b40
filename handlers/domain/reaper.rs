//! The reaper's rules: which of the cloud resources the factory's runs tagged
//! may be deleted, in which order, and how the reaper's work is recorded on
//! a run. Pure: the listing, the run store and the deletions are the
//! caller's (`functions::reaper`, through `ports::leftovers`).
//!
//! A resource is the factory's when it carries `image-factory` (`build` or
//! `test`) and `image-factory-run` (a run id): the Windows template tags what
//! the builder creates so, and the test stage its group, NIC, VM and disk.
//! It is deleted when its run has ended (at least [`GRACE`] ago), or, for a
//! run this factory does not know, when it is older than the configured
//! limit. Never: a resource without both tags, a resource of a run still
//! going, a gallery image version (the builder tags the versions it
//! publishes too) or any type the reaper does not know how to delete.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::machine::{Transition, TransitionError};
use super::run::{BootDiagnosticsRecord, ReapRecord, Run, RunId};

/// The tag marking what the factory's runs create: `build` or `test`.
pub const FACTORY_TAG: &str = "image-factory";
/// The tag naming the run that created a resource.
pub const RUN_TAG: &str = "image-factory-run";
/// The tag holding when the test stage created a resource (RFC 3339).
pub const CREATED_TAG: &str = "image-factory-created";
/// The values of [`FACTORY_TAG`] the factory sets.
pub const FACTORY_ROLES: [&str; 2] = ["build", "test"];

/// The type of a resource group, as the reaper names it.
pub const RESOURCE_GROUP_TYPE: &str = "Microsoft.Resources/resourceGroups";
/// The type of a virtual machine.
pub const VM_TYPE: &str = "Microsoft.Compute/virtualMachines";
/// The type of a managed disk.
pub const DISK_TYPE: &str = "Microsoft.Compute/disks";

/// The loose resource types the reaper deletes, in the order it deletes
/// them: a VM before its NIC and disks (which it holds), a NIC before the
/// public address and network it uses.
pub const REAPED_TYPES: [&str; 7] = [
    VM_TYPE,
    "Microsoft.Network/networkInterfaces",
    DISK_TYPE,
    "Microsoft.Network/publicIPAddresses",
    "Microsoft.Network/networkSecurityGroups",
    "Microsoft.Network/virtualNetworks",
    "Microsoft.KeyVault/vaults",
];

/// How long after its run ended a resource is left alone: the stage that
/// ended it may still be cleaning up (a test group's deletion), and a failed
/// build's VM waits for its boot diagnostics.
pub const GRACE: Duration = Duration::minutes(15);

/// Tries at a VM's boot diagnostics before the reaper deletes it without them.
pub const MAX_DIAGNOSTICS_ATTEMPTS: u32 = 3;

/// Records kept per run of each kind (the oldest go first).
pub const MAX_RECORDS: usize = 100;

/// A resource (or resource group) the listing returned with the factory's tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tagged {
    /// Its id.
    pub id: String,
    /// Its type ([`RESOURCE_GROUP_TYPE`] for a group).
    pub resource_type: String,
    /// Its resource group's name (a group's own name for a group).
    pub group: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// When it was created, when known (the [`CREATED_TAG`], or what the
    /// listing says).
    pub created: Option<DateTime<Utc>>,
}

impl Tagged {
    /// True for a resource group.
    pub fn is_group(&self) -> bool {
        self.resource_type.eq_ignore_ascii_case(RESOURCE_GROUP_TYPE)
    }

    /// True for a VM.
    pub fn is_vm(&self) -> bool {
        self.resource_type.eq_ignore_ascii_case(VM_TYPE)
    }

    /// Its [`FACTORY_TAG`] when it is one the factory sets (`build`, `test`).
    pub fn role(&self) -> Option<&str> {
        self.tags
            .get(FACTORY_TAG)
            .map(String::as_str)
            .filter(|v| FACTORY_ROLES.contains(v))
    }

    /// The run its [`RUN_TAG`] names, when that is a run id.
    pub fn run(&self) -> Option<RunId> {
        self.tags.get(RUN_TAG).and_then(|v| v.parse().ok())
    }

    /// Where it comes in the deletion order (groups last).
    fn rank(&self) -> usize {
        REAPED_TYPES
            .iter()
            .position(|t| t.eq_ignore_ascii_case(&self.resource_type))
            .unwrap_or(REAPED_TYPES.len())
    }
}

/// What the factory's store says of the run a resource names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Not ended: its stages may still use the resource.
    Going,
    /// Ended (`status`) at `at`.
    Ended {
        /// When it ended.
        at: DateTime<Utc>,
        /// Its terminal status, in words.
        status: String,
        /// True when it failed (its VMs' boot diagnostics are worth keeping).
        failed: bool,
    },
    /// The store holds no such run (another factory's, or a run removed).
    Unknown,
}

impl RunState {
    /// What the store's `run` says.
    pub fn of(run: &Run) -> RunState {
        if !run.status.is_terminal() {
            return RunState::Going;
        }
        RunState::Ended {
            at: run.failure.as_ref().map_or(run.updated_at, |f| f.at),
            status: run.status.name().to_string(),
            failed: run.status == super::run::RunStatus::Failed,
        }
    }
}

/// The reaper's verdict on one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delete it, for this reason.
    Reap(String),
    /// Leave it, for this reason.
    Keep(String),
}

/// The reaper's verdict on `resource`, whose run is in `run` state, at `now`;
/// a resource of an unknown run is reaped once older than `max_age`.
pub fn judge(resource: &Tagged, run: &RunState, now: DateTime<Utc>, max_age: Duration) -> Verdict {
    if resource.role().is_none() {
        return Verdict::Keep(format!(
            "not tagged {FACTORY_TAG} = build or test: not the factory's"
        ));
    }
    let Some(run_id) = resource.run() else {
        return Verdict::Keep(format!("no run id in its {RUN_TAG} tag: not the factory's"));
    };
    let kind = resource.resource_type.to_ascii_lowercase();
    if kind.starts_with("microsoft.compute/galleries") {
        return Verdict::Keep(
            "a gallery resource (the builder tags the versions it publishes): never reaped".into(),
        );
    }
    if !resource.is_group() && resource.rank() == REAPED_TYPES.len() {
        return Verdict::Keep(format!(
            "a {}: not a type the reaper deletes",
            resource.resource_type
        ));
    }
    match run {
        RunState::Going => Verdict::Keep(format!("run {run_id} is still going")),
        RunState::Ended { at, status, .. } if now - *at < GRACE => Verdict::Keep(format!(
            "run {run_id} ended {status} less than {} minutes ago",
            GRACE.num_minutes()
        )),
        RunState::Ended { status, .. } => Verdict::Reap(format!("run {run_id} ended {status}")),
        RunState::Unknown => match resource.created {
            Some(created) if now - created >= max_age => Verdict::Reap(format!(
                "run {run_id} is unknown to this factory and the resource is older than {} hours",
                max_age.num_hours()
            )),
            Some(_) => Verdict::Keep(format!(
                "run {run_id} is unknown to this factory and the resource is younger than {} hours",
                max_age.num_hours()
            )),
            None => Verdict::Keep(format!(
                "run {run_id} is unknown to this factory and the resource's age is not known"
            )),
        },
    }
}

/// One firing's plan: what to delete, in order, and what to leave, with why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// To delete, in deletion order (loose resources by [`REAPED_TYPES`],
    /// then groups), each with its reason.
    pub reap: Vec<(Tagged, String)>,
    /// To leave, each with its reason.
    pub keep: Vec<(Tagged, String)>,
}

/// The plan for `listed` (resources and groups), given the state of each run
/// they name (a run missing from `runs` is [`RunState::Unknown`]). A loose
/// resource inside a group that is reaped goes with its group.
pub fn plan(
    listed: &[Tagged],
    runs: &BTreeMap<RunId, RunState>,
    now: DateTime<Utc>,
    max_age: Duration,
) -> Plan {
    let mut plan = Plan::default();
    let mut verdicts: Vec<(Tagged, Verdict)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for resource in listed {
        if !seen.insert(resource.id.to_ascii_lowercase()) {
            continue;
        }
        let state = resource
            .run()
            .and_then(|id| runs.get(&id).cloned())
            .unwrap_or(RunState::Unknown);
        verdicts.push((resource.clone(), judge(resource, &state, now, max_age)));
    }
    let reaped_groups: Vec<String> = verdicts
        .iter()
        .filter(|(r, v)| r.is_group() && matches!(v, Verdict::Reap(_)))
        .map(|(r, _)| r.group.to_ascii_lowercase())
        .collect();
    for (resource, verdict) in verdicts {
        match verdict {
            Verdict::Reap(_)
                if !resource.is_group()
                    && reaped_groups.contains(&resource.group.to_ascii_lowercase()) =>
            {
                let why = format!("deleted with its resource group {}", resource.group);
                plan.keep.push((resource, why));
            }
            Verdict::Reap(why) => plan.reap.push((resource, why)),
            Verdict::Keep(why) => plan.keep.push((resource, why)),
        }
    }
    plan.reap.sort_by_key(|(r, _)| r.rank());
    plan
}

/// Whether the reaper should try to save `vm`'s boot diagnostics before it
/// deletes the VM: its run failed, and no earlier try saved them or used up
/// [`MAX_DIAGNOSTICS_ATTEMPTS`].
pub fn diagnostics_due(run: &Run, state: &RunState, vm: &str) -> bool {
    if !matches!(state, RunState::Ended { failed: true, .. }) {
        return false;
    }
    match run
        .boot_diagnostics
        .iter()
        .find(|d| d.vm.eq_ignore_ascii_case(vm))
    {
        None => true,
        Some(record) => {
            record.serial_log.is_none()
                && record.screenshot.is_none()
                && record.attempts < MAX_DIAGNOSTICS_ATTEMPTS
        }
    }
}

/// `run` with `records` of the reaper's work: each replaces the record of
/// the same resource (a dry run's "would delete" becomes "deleted" once it
/// is), the newest [`MAX_RECORDS`] kept. Taken by a run in any status.
pub fn record_reaped(run: &Run, records: &[ReapRecord]) -> Result<Transition, TransitionError> {
    let mut next = run.clone();
    for record in records {
        next.reaped
            .retain(|r| !r.resource.eq_ignore_ascii_case(&record.resource));
        next.reaped.push(record.clone());
    }
    let excess = next.reaped.len().saturating_sub(MAX_RECORDS);
    next.reaped.drain(..excess);
    Ok(changed(run, next))
}

/// `run` with one try at a VM's boot diagnostics: it replaces the VM's
/// earlier record, counting the tries. Taken by a run in any status.
pub fn record_diagnostics(
    run: &Run,
    record: &BootDiagnosticsRecord,
) -> Result<Transition, TransitionError> {
    let mut next = run.clone();
    let earlier = next
        .boot_diagnostics
        .iter()
        .position(|d| d.vm.eq_ignore_ascii_case(&record.vm));
    let mut record = record.clone();
    if let Some(index) = earlier {
        record.attempts += next.boot_diagnostics[index].attempts;
        next.boot_diagnostics.remove(index);
    }
    next.boot_diagnostics.push(record);
    let excess = next.boot_diagnostics.len().saturating_sub(MAX_RECORDS);
    next.boot_diagnostics.drain(..excess);
    Ok(changed(run, next))
}

fn changed(run: &Run, next: Run) -> Transition {
    Transition {
        changed: next != *run,
        run: next,
        commands: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::run::{ReapOutcome, RunStatus, Trigger, TriggerKind};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    fn tagged(kind: &str, name: &str, run: &str, role: &str) -> Tagged {
        let group = "rg-f-build";
        let id = if kind == RESOURCE_GROUP_TYPE {
            format!("/subscriptions/s/resourceGroups/{name}")
        } else {
            format!("/subscriptions/s/resourceGroups/{group}/providers/{kind}/{name}")
        };
        let mut tags = BTreeMap::new();
        if !role.is_empty() {
            tags.insert(FACTORY_TAG.to_string(), role.to_string());
        }
        if !run.is_empty() {
            tags.insert(RUN_TAG.to_string(), run.to_string());
        }
        Tagged {
            id,
            resource_type: kind.to_string(),
            group: if kind == RESOURCE_GROUP_TYPE {
                name.to_string()
            } else {
                group.to_string()
            },
            tags,
            created: None,
        }
    }

    fn ended(minutes_ago: i64) -> RunState {
        RunState::Ended {
            at: now() - Duration::minutes(minutes_ago),
            status: "failed".into(),
            failed: true,
        }
    }

    const DAY: Duration = Duration::hours(24);

    #[test]
    fn a_resource_of_an_ended_run_is_reaped_once_the_grace_has_passed() {
        let vm = tagged(VM_TYPE, "pkrvm1", "push-a-1", "build");
        assert!(
            matches!(judge(&vm, &ended(60), now(), DAY), Verdict::Reap(why) if why.contains("ended failed"))
        );
        assert!(
            matches!(judge(&vm, &ended(5), now(), DAY), Verdict::Keep(why) if why.contains("less than 15 minutes"))
        );
    }

    #[test]
    fn a_resource_of_a_run_still_going_is_never_reaped_whatever_its_age() {
        let mut vm = tagged(VM_TYPE, "pkrvm1", "push-a-1", "build");
        vm.created = Some(now() - Duration::days(30));
        assert_eq!(
            judge(&vm, &RunState::Going, now(), DAY),
            Verdict::Keep("run push-a-1 is still going".into())
        );
    }

    #[test]
    fn a_resource_without_both_factory_tags_is_never_reaped() {
        for resource in [
            tagged(VM_TYPE, "vm", "", ""),
            tagged(VM_TYPE, "vm", "push-a-1", ""),
            tagged(VM_TYPE, "vm", "push-a-1", "production"),
            tagged(VM_TYPE, "vm", "", "build"),
            tagged(VM_TYPE, "vm", "Not A Run/../x", "build"),
        ] {
            assert!(
                matches!(judge(&resource, &ended(600), now(), DAY), Verdict::Keep(why) if why.contains("not the factory's")),
                "{resource:?}"
            );
        }
    }

    #[test]
    fn a_gallery_version_and_an_unknown_type_are_never_reaped() {
        let version = tagged(
            "Microsoft.Compute/galleries/images/versions",
            "g/windows-web-base/2026.1201.0",
            "push-a-1",
            "build",
        );
        assert!(
            matches!(judge(&version, &ended(600), now(), DAY), Verdict::Keep(why) if why.contains("never reaped"))
        );
        let account = tagged(
            "Microsoft.Storage/storageAccounts",
            "st",
            "push-a-1",
            "build",
        );
        assert!(
            matches!(judge(&account, &ended(600), now(), DAY), Verdict::Keep(why) if why.contains("not a type the reaper deletes"))
        );
    }

    #[test]
    fn a_resource_of_an_unknown_run_is_reaped_only_when_known_to_be_older_than_the_limit() {
        let mut nic = tagged(
            "Microsoft.Network/networkInterfaces",
            "nic",
            "push-other-1",
            "test",
        );
        assert!(
            matches!(judge(&nic, &RunState::Unknown, now(), DAY), Verdict::Keep(why) if why.contains("age is not known"))
        );
        nic.created = Some(now() - Duration::hours(2));
        assert!(
            matches!(judge(&nic, &RunState::Unknown, now(), DAY), Verdict::Keep(why) if why.contains("younger than 24 hours"))
        );
        nic.created = Some(now() - Duration::hours(25));
        assert!(
            matches!(judge(&nic, &RunState::Unknown, now(), DAY), Verdict::Reap(why) if why.contains("older than 24 hours"))
        );
    }

    #[test]
    fn the_plan_deletes_vms_first_and_leaves_a_reaped_groups_content_to_the_group() {
        let group = tagged(RESOURCE_GROUP_TYPE, "imgf-test-t-1", "push-t-1", "test");
        let mut inside = tagged(VM_TYPE, "vm-smoke", "push-t-1", "test");
        inside.group = "imgf-test-t-1".into();
        let listed = vec![
            tagged(
                "Microsoft.Network/networkInterfaces",
                "pkrni",
                "push-b-1",
                "build",
            ),
            tagged(DISK_TYPE, "pkros", "push-b-1", "build"),
            group.clone(),
            inside.clone(),
            tagged(VM_TYPE, "pkrvm", "push-b-1", "build"),
            tagged(VM_TYPE, "pkrvm", "push-b-1", "build"),
            tagged(VM_TYPE, "running", "push-c-1", "build"),
        ];
        let runs = BTreeMap::from([
            ("push-b-1".parse().unwrap(), ended(60)),
            ("push-t-1".parse().unwrap(), ended(60)),
            ("push-c-1".parse().unwrap(), RunState::Going),
        ]);
        let plan = plan(&listed, &runs, now(), DAY);
        let order: Vec<&str> = plan
            .reap
            .iter()
            .map(|(r, _)| r.id.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(order, ["pkrvm", "pkrni", "pkros", "imgf-test-t-1"]);
        let kept: Vec<(&str, &str)> = plan
            .keep
            .iter()
            .map(|(r, why)| (r.id.rsplit('/').next().unwrap(), why.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                ("vm-smoke", "deleted with its resource group imgf-test-t-1"),
                ("running", "run push-c-1 is still going")
            ]
        );
    }

    fn run(status: RunStatus) -> Run {
        let mut run = Run::new(
            "push-a-1".parse().unwrap(),
            "a".into(),
            "2026.1201.0".parse().unwrap(),
            Trigger::new(TriggerKind::Push, "github"),
            BTreeMap::new(),
            now() - Duration::hours(2),
        );
        run.status = status;
        run
    }

    fn diagnostics(attempts: u32, saved: bool) -> BootDiagnosticsRecord {
        BootDiagnosticsRecord {
            vm: "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/pkrvm".into(),
            role: "build".into(),
            serial_log: saved.then(|| "https://logs/push-a-1/serial.log".into()),
            screenshot: None,
            attempts,
            note: (!saved).then(|| "turned on".into()),
            at: now(),
        }
    }

    #[test]
    fn boot_diagnostics_are_due_for_a_failed_runs_vm_until_saved_or_tried_three_times() {
        let vm = diagnostics(1, false).vm;
        let failed = run(RunStatus::Failed);
        let state = RunState::of(&failed);
        assert!(diagnostics_due(&failed, &state, &vm));
        assert!(!diagnostics_due(
            &run(RunStatus::Released),
            &RunState::of(&run(RunStatus::Released)),
            &vm
        ));
        let once = record_diagnostics(&failed, &diagnostics(1, false))
            .unwrap()
            .run;
        assert!(diagnostics_due(&once, &state, &vm));
        let thrice = record_diagnostics(
            &record_diagnostics(&once, &diagnostics(1, false))
                .unwrap()
                .run,
            &diagnostics(1, false),
        )
        .unwrap()
        .run;
        assert_eq!(thrice.boot_diagnostics.len(), 1);
        assert_eq!(thrice.boot_diagnostics[0].attempts, 3);
        assert!(!diagnostics_due(&thrice, &state, &vm));
        let saved = record_diagnostics(&once, &diagnostics(1, true))
            .unwrap()
            .run;
        assert!(!diagnostics_due(&saved, &state, &vm));
    }

    #[test]
    fn reaping_is_recorded_on_an_ended_run_the_latest_outcome_per_resource() {
        let ended = run(RunStatus::Failed);
        let record = |outcome| {
            ReapRecord {
            resource: "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/pkrvm".into(),
            resource_type: VM_TYPE.into(),
            outcome,
            reason: "run push-a-1 ended failed".into(),
            at: now(),
        }
        };
        let dry = record_reaped(&ended, &[record(ReapOutcome::WouldDelete)]).unwrap();
        assert!(dry.changed);
        let again = record_reaped(&dry.run, &[record(ReapOutcome::WouldDelete)]).unwrap();
        assert!(!again.changed, "a second dry run records nothing new");
        let deleted = record_reaped(&dry.run, &[record(ReapOutcome::Deleted)])
            .unwrap()
            .run;
        assert_eq!(deleted.reaped.len(), 1);
        assert_eq!(deleted.reaped[0].outcome, ReapOutcome::Deleted);
        assert_eq!(deleted.status, RunStatus::Failed);
    }
}
