//! Where a run's source comes from: the snapshot of the images folder at one
//! commit, taken when the run is created and named by the SHA-256 of its
//! canonical archive ([`SnapshotId`]). Every stage reads that snapshot and
//! nothing else, so what is built, tagged, noted and released is the
//! content of [`SourceRecord::commit`] (or, on one machine whose images
//! folder is not in a git repository, the working tree as it was, marked
//! [`SourceRecord::uncommitted`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A snapshot's name: the SHA-256 of its canonical archive, 64 lower-case
/// hex digits. Safe as a file or blob name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SnapshotId(String);

/// Why a text is not a snapshot id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a snapshot id: a snapshot is named by the SHA-256 of its archive, 64 lower-case hex digits"
)]
pub struct SnapshotIdError;

impl SnapshotId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits, as pages show it.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl FromStr for SnapshotId {
    type Err = SnapshotIdError;

    fn from_str(s: &str) -> Result<SnapshotId, SnapshotIdError> {
        let ok = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| SnapshotId(s.to_string())).ok_or(SnapshotIdError)
    }
}

impl<'de> Deserialize<'de> for SnapshotId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SnapshotId, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A run's source, as recorded on the run and in its release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRecord {
    /// The repository the snapshot was taken from, as its host names it
    /// (`github.com/<owner>/<repo>`, an Azure DevOps repository URL, or the
    /// local repository's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The commit whose images folder the snapshot holds (for an
    /// uncommitted working tree: the commit the trigger named, not built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The snapshot of the whole images folder.
    pub snapshot: SnapshotId,
    /// The snapshot's size: bytes of its files.
    pub size: u64,
    /// The SHA-256 of the canonical archive of this run's image folder in
    /// the snapshot.
    pub image_hash: String,
    /// True when the snapshot is a copy of a working tree that is not in a
    /// git repository: no commit holds what was built.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uncommitted: bool,
}

/// The words every place that shows a run's source uses for a working tree.
pub const UNCOMMITTED: &str = "uncommitted working tree";

impl SourceRecord {
    /// The commit a tag may name: `None` for an uncommitted working tree.
    pub fn built_commit(&self) -> Option<&str> {
        if self.uncommitted {
            None
        } else {
            self.commit.as_deref()
        }
    }

    /// One line on where the source came from, as pages and notes show it.
    pub fn describe(&self) -> String {
        let from = match (&self.commit, self.uncommitted) {
            (_, true) => UNCOMMITTED.to_string(),
            (Some(commit), false) => format!("commit {commit}"),
            (None, false) => "no commit".to_string(),
        };
        let repository = self
            .repository
            .as_deref()
            .map(|r| format!(" of {r}"))
            .unwrap_or_default();
        format!(
            "{from}{repository}, snapshot sha256:{} ({} bytes)",
            self.snapshot, self.size
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0f343b0931126a20f133d67c2b018a3b1bcb4ec7e2b1c1ea0a4b58c1f2b4d07e";

    #[test]
    fn snapshot_ids_are_sha256_hex_and_nothing_else() {
        let id: SnapshotId = HASH.parse().expect("an id");
        assert_eq!(id.short(), "0f343b093112");
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{HASH}\""));
        for bad in [
            "",
            &HASH[1..],
            &HASH.to_uppercase(),
            "../../etc/passwd",
            &format!("{HASH}0"),
        ] {
            assert!(bad.parse::<SnapshotId>().is_err(), "{bad}");
            assert!(serde_json::from_value::<SnapshotId>(serde_json::json!(bad)).is_err());
        }
    }

    #[test]
    fn an_uncommitted_working_tree_names_no_commit_to_tag_and_says_so() {
        let mut record = SourceRecord {
            repository: Some("github.com/octo/images".into()),
            commit: Some("a".repeat(40)),
            snapshot: HASH.parse().unwrap(),
            size: 10,
            image_hash: HASH.into(),
            uncommitted: false,
        };
        assert_eq!(record.built_commit(), Some("a".repeat(40).as_str()));
        assert!(
            record
                .describe()
                .contains(&format!("commit {}", "a".repeat(40)))
        );
        record.uncommitted = true;
        assert_eq!(record.built_commit(), None);
        assert!(
            record.describe().starts_with(UNCOMMITTED),
            "{}",
            record.describe()
        );
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["uncommitted"], true);
        assert_eq!(json["snapshot"], HASH);
    }
}
