//! Microsoft's monthly security data: one CVRF document of the Security
//! Update Guide (CVRF 1.1, as its API answers with `Accept:
//! application/xml`), read into what the patch rules need ([`super::patch`]).
//! Pure: [`CvrfDocument::parse`] reads a string.
//!
//! What is kept, by element (namespaces `cvrf`, `prod`, `vuln` of
//! `http://www.icasi.org/CVRF/schema/…/1.1`):
//!
//! - `DocumentTitle`, `DocumentTracking/Identification/ID` (the month,
//!   `yyyy-Mon`), `InitialReleaseDate`, `CurrentReleaseDate` (later when the
//!   document was revised);
//! - every `prod:FullProductName` of the `ProductTree` (its `ProductID` and
//!   name): products are found by name, never by a hard-coded id;
//! - per `vuln:Vulnerability`: `CVE`, `Title`, each `Threat Type="Severity"`
//!   (per product), the highest `CVSSScoreSets/ScoreSet/BaseScore`, and each
//!   `Remediation Type="Vendor Fix"` (its `Description`, the KB number;
//!   `SubType`; `FixedBuild`, as written; the products it names). Other remediations
//!   (known issues, mitigations, workarounds) are left out.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::calendar::Month;

/// The CVRF namespace (document, tracking, notes).
const CVRF: &str = "http://www.icasi.org/CVRF/schema/cvrf/1.1";
/// The product tree's namespace.
const PROD: &str = "http://www.icasi.org/CVRF/schema/prod/1.1";
/// The vulnerabilities' namespace.
const VULN: &str = "http://www.icasi.org/CVRF/schema/vuln/1.1";

/// The month names of a month id, as Microsoft writes them (`2024-Jun`).
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A month of Microsoft's security updates, `yyyy-Mon` (`2024-Jun`): the id
/// of its CVRF document. Ordered by time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonthId(Month);

impl MonthId {
    /// The calendar month.
    pub fn month(self) -> Month {
        self.0
    }
}

impl From<Month> for MonthId {
    fn from(month: Month) -> MonthId {
        MonthId(month)
    }
}

impl fmt::Display for MonthId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = MONTHS
            .get(self.0.month.wrapping_sub(1) as usize)
            .unwrap_or(&"???");
        write!(f, "{:04}-{name}", self.0.year)
    }
}

/// A month id that is not `yyyy-Mon`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "\"{0}\" is not a month of security updates: write yyyy-Mon with the month's English abbreviation, e.g. 2026-Jan"
)]
pub struct MonthIdError(pub String);

impl FromStr for MonthId {
    type Err = MonthIdError;

    /// `2024-Jun`; the month's name in any case (`2024-jun`).
    fn from_str(text: &str) -> Result<MonthId, MonthIdError> {
        let err = || MonthIdError(text.to_string());
        let (year, name) = text.split_once('-').ok_or_else(err)?;
        if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let year: i32 = year.parse().map_err(|_| err())?;
        let month = MONTHS
            .iter()
            .position(|m| m.eq_ignore_ascii_case(name))
            .ok_or_else(err)?;
        Ok(MonthId(Month {
            year,
            month: month as u32 + 1,
        }))
    }
}

impl Serialize for MonthId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MonthId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MonthId, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A Windows build as Microsoft writes it, `major.minor.build.revision`
/// (`10.0.20348.2527`: the revision is the update build revision, UBR).
/// Ordered part by part, so a later cumulative update is a higher build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowsBuild {
    /// `10` for Windows 10, 11 and Server 2016 on.
    pub major: u32,
    /// `0` for the same.
    pub minor: u32,
    /// The OS build (`20348` is Windows Server 2022).
    pub build: u32,
    /// The update build revision (UBR): which cumulative update is installed.
    pub revision: u32,
}

/// A build that is not four numbers joined by dots.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not a Windows build: write major.minor.build.revision, e.g. 10.0.20348.2527")]
pub struct WindowsBuildError(pub String);

impl FromStr for WindowsBuild {
    type Err = WindowsBuildError;

    fn from_str(text: &str) -> Result<WindowsBuild, WindowsBuildError> {
        let err = || WindowsBuildError(text.to_string());
        let mut parts = text.split('.').map(|part| {
            if part.is_empty() || part.len() > 9 || !part.bytes().all(|b| b.is_ascii_digit()) {
                Err(err())
            } else {
                part.parse::<u32>().map_err(|_| err())
            }
        });
        let mut next = || parts.next().ok_or_else(err)?;
        let build = WindowsBuild {
            major: next()?,
            minor: next()?,
            build: next()?,
            revision: next()?,
        };
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(build)
    }
}

impl fmt::Display for WindowsBuild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.major, self.minor, self.build, self.revision
        )
    }
}

impl Serialize for WindowsBuild {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WindowsBuild {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<WindowsBuild, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Microsoft's severity rating of a vulnerability for one product, ordered
/// from the least to the most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// The document rates it with an empty description.
    Unrated,
    /// `Low`.
    Low,
    /// `Moderate`.
    Moderate,
    /// `Important`.
    Important,
    /// `Critical`.
    Critical,
}

impl Severity {
    /// Every severity, the most severe first (the order people read them in).
    pub const MOST_SEVERE_FIRST: [Severity; 5] = [
        Severity::Critical,
        Severity::Important,
        Severity::Moderate,
        Severity::Low,
        Severity::Unrated,
    ];

    /// The severity a `Threat Type="Severity"` describes: Microsoft's four
    /// ratings, or none (an empty description). Another word is refused:
    /// a rating the rules do not know must not be read as a lower one.
    pub fn parse(text: &str) -> Option<Severity> {
        match text.trim() {
            "" => Some(Severity::Unrated),
            "Low" => Some(Severity::Low),
            "Moderate" => Some(Severity::Moderate),
            "Important" => Some(Severity::Important),
            "Critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl Severity {
    /// The word (`Critical`).
    pub fn name(self) -> &'static str {
        match self {
            Severity::Unrated => "Unrated",
            Severity::Low => "Low",
            Severity::Moderate => "Moderate",
            Severity::Important => "Important",
            Severity::Critical => "Critical",
        }
    }
}

impl fmt::Display for Severity {
    /// The word, padded to the formatter's width (`{:<9}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A product of the document's product tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// Its `ProductID` (`11923`), which may differ from month to month.
    pub id: String,
    /// Its full name (`Windows Server 2022`).
    pub name: String,
}

/// A `Remediation Type="Vendor Fix"`: an update that fixes the vulnerability
/// in the products it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorFix {
    /// The update, `KB` and the number of the remediation's `Description`
    /// (`KB5039227`), or the description as written when it is not a number.
    pub kb: String,
    /// What kind of update (`Security Update`, `Security Hotpatch Update`,
    /// `Security Only`, `Monthly Rollup`, ...); empty when not given.
    pub sub_type: String,
    /// The first build that carries the fix, as written (`10.0.20348.2527`
    /// for Windows; other products write versions or links); empty when not
    /// given. [`VendorFix::windows_build`] reads it.
    pub fixed_build: String,
    /// The products it fixes, by `ProductID`.
    pub products: Vec<String>,
}

impl VendorFix {
    /// The `SubType` of a monthly cumulative update: the only fixes the
    /// patch rules count.
    pub const SECURITY_UPDATE: &'static str = "Security Update";

    /// Whether it is a monthly cumulative update (`SubType` "Security
    /// Update"), not a hotpatch, a security-only or a rollup update.
    pub fn is_security_update(&self) -> bool {
        self.sub_type == VendorFix::SECURITY_UPDATE
    }

    /// The fixed build as a Windows build, if it is one.
    pub fn windows_build(&self) -> Option<WindowsBuild> {
        self.fixed_build.parse().ok()
    }
}

/// The CVSS score set with the highest base score of a vulnerability.
#[derive(Clone, Debug, PartialEq)]
pub struct Cvss {
    /// The base score, 0.0-10.0.
    pub base_score: f64,
    /// The vector (`CVSS:3.1/AV:N/...`), empty when not given.
    pub vector: String,
}

/// One `vuln:Vulnerability`.
#[derive(Clone, Debug, PartialEq)]
pub struct Vulnerability {
    /// `CVE-2024-30080` (or an advisory id, `ADV…`).
    pub cve: String,
    /// Its title.
    pub title: String,
    /// Its severity for each product rated, by `ProductID` (the highest when
    /// a product is rated twice).
    pub severities: BTreeMap<String, Severity>,
    /// Its highest CVSS base score, if scored.
    pub cvss: Option<Cvss>,
    /// The updates that fix it.
    pub fixes: Vec<VendorFix>,
}

/// One month's CVRF document.
#[derive(Clone, Debug, PartialEq)]
pub struct CvrfDocument {
    /// The month (`DocumentTracking/Identification/ID`).
    pub id: MonthId,
    /// `June 2024 Security Updates`.
    pub title: String,
    /// When the month was first released.
    pub initial_release: DateTime<Utc>,
    /// When the document was last revised (its `CurrentReleaseDate`).
    pub current_release: DateTime<Utc>,
    /// The product tree, each (id, name) pair once.
    pub products: Vec<Product>,
    /// The vulnerabilities, in document order.
    pub vulnerabilities: Vec<Vulnerability>,
}

/// A document that is not a CVRF document the rules can read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a readable CVRF document: {0}")]
pub struct CvrfError(pub String);

/// A CVRF date: RFC 3339, or (as Microsoft writes them) a date and time
/// with no offset, which is UTC.
pub fn parse_cvrf_date(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|d| d.and_utc())
        })
}

/// The KB of a remediation's description: `KB5039227` for `5039227`.
fn kb_of(description: &str) -> String {
    let description = description.trim();
    if !description.is_empty() && description.bytes().all(|b| b.is_ascii_digit()) {
        format!("KB{description}")
    } else {
        description.to_string()
    }
}

type Node<'a, 'input> = roxmltree::Node<'a, 'input>;

/// The child elements of `node` named `name` in namespace `ns`.
fn children<'a, 'input>(
    node: Node<'a, 'input>,
    ns: &'static str,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children()
        .filter(move |child| child.has_tag_name((ns, name)))
}

/// The first child element of `node` named `name` in `ns`.
fn child<'a, 'input>(
    node: Node<'a, 'input>,
    ns: &'static str,
    name: &'static str,
) -> Option<Node<'a, 'input>> {
    children(node, ns, name).next()
}

/// The text of the first child element `name` in `ns`, trimmed ("" when empty).
fn child_text(node: Node<'_, '_>, ns: &'static str, name: &'static str) -> Option<String> {
    child(node, ns, name).map(|c| c.text().unwrap_or_default().trim().to_string())
}

/// The `vuln:ProductID`s listed under `node`.
fn product_ids(node: Node<'_, '_>) -> Vec<String> {
    children(node, VULN, "ProductID")
        .filter_map(|p| p.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

impl CvrfDocument {
    /// Reads a CVRF document. Refuses a document that is not XML, whose
    /// root is not `cvrf:cvrfdoc`, whose month, title or dates are missing
    /// or malformed, or whose vulnerabilities have no CVE, an unknown
    /// severity or a base score that is not a number from 0 to 10; each
    /// error names what and where. A `FixedBuild` is kept as written: other
    /// products than Windows write versions or links there.
    pub fn parse(xml: &str) -> Result<CvrfDocument, CvrfError> {
        let tree =
            roxmltree::Document::parse(xml).map_err(|e| CvrfError(format!("not XML: {e}")))?;
        let root = tree.root_element();
        if !root.has_tag_name((CVRF, "cvrfdoc")) {
            return Err(CvrfError(format!(
                "the root element is <{}> in namespace {}, not <cvrfdoc> in {CVRF}",
                root.tag_name().name(),
                root.tag_name().namespace().unwrap_or("(none)")
            )));
        }
        let missing = |what: &str| CvrfError(format!("it has no {what}"));
        let tracking =
            child(root, CVRF, "DocumentTracking").ok_or_else(|| missing("DocumentTracking"))?;
        let id_text = child(tracking, CVRF, "Identification")
            .and_then(|i| child_text(i, CVRF, "ID"))
            .ok_or_else(|| missing("DocumentTracking/Identification/ID"))?;
        let id: MonthId = id_text
            .parse()
            .map_err(|e: MonthIdError| CvrfError(format!("its ID: {e}")))?;
        let date = |name: &'static str| -> Result<DateTime<Utc>, CvrfError> {
            let text = child_text(tracking, CVRF, name)
                .ok_or_else(|| missing(&format!("DocumentTracking/{name}")))?;
            parse_cvrf_date(&text)
                .ok_or_else(|| CvrfError(format!("its {name} \"{text}\" is not a date and time")))
        };
        let title = child_text(root, CVRF, "DocumentTitle")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| missing("DocumentTitle"))?;
        let mut products: Vec<Product> = Vec::new();
        if let Some(tree) = child(root, PROD, "ProductTree") {
            for name in tree
                .descendants()
                .filter(|n| n.has_tag_name((PROD, "FullProductName")))
            {
                let product = Product {
                    id: name
                        .attribute("ProductID")
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                    name: name.text().unwrap_or_default().trim().to_string(),
                };
                if !product.id.is_empty() && !products.contains(&product) {
                    products.push(product);
                }
            }
        }
        let vulnerabilities = children(root, VULN, "Vulnerability")
            .enumerate()
            .map(|(n, v)| parse_vulnerability(v, n))
            .collect::<Result<_, _>>()?;
        Ok(CvrfDocument {
            id,
            title,
            initial_release: date("InitialReleaseDate")?,
            current_release: date("CurrentReleaseDate")?,
            products,
            vulnerabilities,
        })
    }

    /// The ids of the products named exactly `name`.
    pub fn product_ids(&self, name: &str) -> Vec<&str> {
        self.products
            .iter()
            .filter(|p| p.name == name)
            .map(|p| p.id.as_str())
            .collect()
    }
}

/// One `vuln:Vulnerability` (the `n`th, from 1 in errors).
fn parse_vulnerability(node: Node<'_, '_>, n: usize) -> Result<Vulnerability, CvrfError> {
    let cve = child_text(node, VULN, "CVE")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| CvrfError(format!("vulnerability {} has no CVE", n + 1)))?;
    let bad = |what: String| CvrfError(format!("{cve}: {what}"));
    let mut severities: BTreeMap<String, Severity> = BTreeMap::new();
    for threat in child(node, VULN, "Threats")
        .into_iter()
        .flat_map(|t| children(t, VULN, "Threat"))
        .filter(|t| t.attribute("Type") == Some("Severity"))
    {
        let text = child_text(threat, VULN, "Description").unwrap_or_default();
        let severity = Severity::parse(&text).ok_or_else(|| {
            bad(format!(
                "severity \"{text}\" is none of Critical, Important, Moderate, Low"
            ))
        })?;
        for product in product_ids(threat) {
            let rated = severities.entry(product).or_insert(severity);
            *rated = (*rated).max(severity);
        }
    }
    let mut cvss: Option<Cvss> = None;
    for set in child(node, VULN, "CVSSScoreSets")
        .into_iter()
        .flat_map(|s| children(s, VULN, "ScoreSet"))
    {
        let Some(text) = child_text(set, VULN, "BaseScore").filter(|t| !t.is_empty()) else {
            continue;
        };
        let base_score: f64 = text
            .parse()
            .ok()
            .filter(|s: &f64| (0.0..=10.0).contains(s))
            .ok_or_else(|| {
                bad(format!(
                    "CVSS base score \"{text}\" is not a number from 0 to 10"
                ))
            })?;
        if cvss.as_ref().is_none_or(|c| base_score > c.base_score) {
            cvss = Some(Cvss {
                base_score,
                vector: child_text(set, VULN, "Vector").unwrap_or_default(),
            });
        }
    }
    let mut fixes = Vec::new();
    for remediation in child(node, VULN, "Remediations")
        .into_iter()
        .flat_map(|r| children(r, VULN, "Remediation"))
        .filter(|r| r.attribute("Type") == Some("Vendor Fix"))
    {
        fixes.push(VendorFix {
            kb: kb_of(&child_text(remediation, VULN, "Description").unwrap_or_default()),
            sub_type: child_text(remediation, VULN, "SubType").unwrap_or_default(),
            fixed_build: child_text(remediation, VULN, "FixedBuild").unwrap_or_default(),
            products: product_ids(remediation),
        });
    }
    Ok(Vulnerability {
        title: child_text(node, VULN, "Title").unwrap_or_default(),
        cve,
        severities,
        cvss,
        fixes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document with the real one's namespaces and `body` in it.
    fn document(tracking: &str, body: &str) -> String {
        format!(
            r#"<cvrf:cvrfdoc xmlns:vuln="{VULN}" xmlns:prod="{PROD}" xmlns:cvrf="{CVRF}">
  <cvrf:DocumentTitle>June 2024 Security Updates</cvrf:DocumentTitle>
  <cvrf:DocumentTracking>{tracking}</cvrf:DocumentTracking>
  {body}
</cvrf:cvrfdoc>"#
        )
    }

    const TRACKING: &str = "<cvrf:Identification><cvrf:ID>2024-Jun</cvrf:ID></cvrf:Identification>\
        <cvrf:InitialReleaseDate>2024-06-11T07:00:00</cvrf:InitialReleaseDate>\
        <cvrf:CurrentReleaseDate>2024-06-13T00:00:00Z</cvrf:CurrentReleaseDate>";

    fn vulnerability(inner: &str) -> String {
        format!("<vuln:Vulnerability Ordinal=\"0\">{inner}</vuln:Vulnerability>")
    }

    #[test]
    fn month_ids_are_yyyy_mon_in_any_case_and_print_as_microsoft_writes_them() {
        let id: MonthId = "2024-jun".parse().unwrap();
        assert_eq!(id.to_string(), "2024-Jun");
        assert_eq!(
            id.month(),
            Month {
                year: 2024,
                month: 6
            }
        );
        assert_eq!(
            MonthId::from(Month {
                year: 2026,
                month: 1
            })
            .to_string(),
            "2026-Jan"
        );
        assert!("2025-Dec".parse::<MonthId>().unwrap() < "2026-Jan".parse().unwrap());
        for bad in [
            "2024-06",
            "24-Jun",
            "2024-June",
            "2017-May-B",
            "",
            "2024Jun",
            "+024-Jun",
        ] {
            let err = bad.parse::<MonthId>().unwrap_err().to_string();
            assert!(err.contains("yyyy-Mon"), "{bad}: {err}");
        }
    }

    #[test]
    fn windows_builds_are_four_numbers_ordered_part_by_part() {
        let build: WindowsBuild = "10.0.20348.2527".parse().unwrap();
        assert_eq!((build.build, build.revision), (20348, 2527));
        assert_eq!(build.to_string(), "10.0.20348.2527");
        assert!(build < "10.0.20348.10000".parse().unwrap());
        assert!(build > "10.0.17763.9999".parse().unwrap());
        for bad in [
            "10.0.20348",
            "10.0.20348.2527.1",
            "10.0.20348.x",
            "10.0..1",
            " 10.0.1.2",
            "10.0.1.-2",
            "10.0.1.99999999999",
        ] {
            assert!(bad.parse::<WindowsBuild>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_document_is_read_with_its_products_severities_scores_and_vendor_fixes() {
        let xml = document(
            TRACKING,
            &format!(
                r#"<prod:ProductTree>
                     <prod:Branch Type="Vendor" Name="Microsoft"><prod:FullProductName ProductID="11923">Windows Server 2022</prod:FullProductName></prod:Branch>
                     <prod:FullProductName ProductID="11923" CPE="cpe">Windows Server 2022</prod:FullProductName>
                   </prod:ProductTree>
                   {}"#,
                vulnerability(
                    r#"<vuln:Title>MSMQ</vuln:Title><vuln:CVE>CVE-2024-30080</vuln:CVE>
                       <vuln:Threats>
                         <vuln:Threat Type="Impact"><vuln:Description>Remote Code Execution</vuln:Description><vuln:ProductID>11923</vuln:ProductID></vuln:Threat>
                         <vuln:Threat Type="Severity"><vuln:Description>Important</vuln:Description><vuln:ProductID>11923</vuln:ProductID></vuln:Threat>
                         <vuln:Threat Type="Severity"><vuln:Description>Critical</vuln:Description><vuln:ProductID>11923</vuln:ProductID></vuln:Threat>
                       </vuln:Threats>
                       <vuln:CVSSScoreSets>
                         <vuln:ScoreSet><vuln:BaseScore>7.5</vuln:BaseScore><vuln:Vector>low</vuln:Vector></vuln:ScoreSet>
                         <vuln:ScoreSet><vuln:BaseScore>9.8</vuln:BaseScore><vuln:Vector>high</vuln:Vector></vuln:ScoreSet>
                       </vuln:CVSSScoreSets>
                       <vuln:Remediations>
                         <vuln:Remediation Type="Vendor Fix"><vuln:Description>5039227</vuln:Description><vuln:ProductID>11923</vuln:ProductID><vuln:SubType>Security Update</vuln:SubType><vuln:FixedBuild>10.0.20348.2527</vuln:FixedBuild></vuln:Remediation>
                         <vuln:Remediation Type="Known Issue"><vuln:Description>5039227</vuln:Description><vuln:ProductID>11923</vuln:ProductID></vuln:Remediation>
                         <vuln:Remediation Type="Vendor Fix"><vuln:Description>Release Notes</vuln:Description><vuln:ProductID>1</vuln:ProductID></vuln:Remediation>
                       </vuln:Remediations>"#
                )
            ),
        );
        let doc = CvrfDocument::parse(&xml).unwrap();
        assert_eq!(doc.id.to_string(), "2024-Jun");
        assert_eq!(doc.title, "June 2024 Security Updates");
        assert_eq!(
            doc.current_release.to_rfc3339(),
            "2024-06-13T00:00:00+00:00"
        );
        assert_eq!(
            doc.initial_release.to_rfc3339(),
            "2024-06-11T07:00:00+00:00"
        );
        assert_eq!(
            doc.product_ids("Windows Server 2022"),
            ["11923"],
            "one pair, listed twice"
        );
        let v = &doc.vulnerabilities[0];
        assert_eq!(
            (v.cve.as_str(), v.title.as_str()),
            ("CVE-2024-30080", "MSMQ")
        );
        assert_eq!(
            v.severities["11923"],
            Severity::Critical,
            "the highest rating"
        );
        assert_eq!(
            v.cvss,
            Some(Cvss {
                base_score: 9.8,
                vector: "high".into()
            })
        );
        assert_eq!(v.fixes.len(), 2, "vendor fixes only");
        assert_eq!(v.fixes[0].kb, "KB5039227");
        assert!(v.fixes[0].is_security_update());
        assert_eq!(
            v.fixes[0].windows_build(),
            Some("10.0.20348.2527".parse().unwrap())
        );
        assert_eq!(
            (v.fixes[1].kb.as_str(), v.fixes[1].windows_build()),
            ("Release Notes", None)
        );
        assert!(!v.fixes[1].is_security_update());
    }

    #[test]
    fn what_the_rules_cannot_read_is_refused_with_what_and_where() {
        let refused = |xml: &str, expected: &str| {
            let err = CvrfDocument::parse(xml).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        };
        refused("not xml <", "not XML");
        refused("{\"DocumentTitle\": {}}", "not XML");
        refused(
            &format!("<cvrfdoc xmlns=\"{PROD}\"/>"),
            "root element is <cvrfdoc> in namespace",
        );
        refused(&document("", ""), "no DocumentTracking/Identification/ID");
        refused(
            &document(&TRACKING.replace("2024-Jun", "2017-May-B"), ""),
            "\"2017-May-B\" is not a month",
        );
        refused(
            &document(&TRACKING.replace("2024-06-13T00:00:00Z", "yesterday"), ""),
            "CurrentReleaseDate \"yesterday\"",
        );
        refused(
            &document(TRACKING, &vulnerability("<vuln:Title>x</vuln:Title>")),
            "vulnerability 1 has no CVE",
        );
        let with = |inner: &str| {
            document(
                TRACKING,
                &vulnerability(&format!("<vuln:CVE>CVE-1</vuln:CVE>{inner}")),
            )
        };
        refused(
            &with(
                "<vuln:Threats><vuln:Threat Type=\"Severity\"><vuln:Description>Severe</vuln:Description></vuln:Threat></vuln:Threats>",
            ),
            "CVE-1: severity \"Severe\"",
        );
        refused(
            &with(
                "<vuln:CVSSScoreSets><vuln:ScoreSet><vuln:BaseScore>high</vuln:BaseScore></vuln:ScoreSet></vuln:CVSSScoreSets>",
            ),
            "CVE-1: CVSS base score \"high\"",
        );
    }

    #[test]
    fn an_empty_severity_is_unrated_and_severities_order_by_gravity() {
        assert_eq!(Severity::parse(""), Some(Severity::Unrated));
        assert_eq!(Severity::parse("Critical"), Some(Severity::Critical));
        assert_eq!(Severity::parse("critical"), None);
        let mut sorted = Severity::MOST_SEVERE_FIRST;
        sorted.sort();
        sorted.reverse();
        assert_eq!(sorted, Severity::MOST_SEVERE_FIRST);
    }
}
