//! What a network security group admits: its rules (its own and Azure's
//! default ones, as Resource Manager returns them) evaluated as Azure
//! evaluates them, the rule of lowest priority number that matches a flow
//! deciding it. `doctor --url` asks it whether the build subnet admits WinRM
//! from the Container Apps environment's subnet and nothing from elsewhere.
//!
//! IPv4 only. Sources are matched as addresses: `*`, a prefix or an address,
//! and the service tags `VirtualNetwork` (the network's address space),
//! `Internet` (anything outside it) and `AzureLoadBalancer`
//! (168.63.129.16); a rule naming another tag cannot be evaluated and says
//! so rather than guess.

use std::net::Ipv4Addr;

use serde_json::Value;

/// One security rule, inbound or outbound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// Its priority (lower wins).
    pub priority: u32,
    /// True for an inbound rule.
    pub inbound: bool,
    /// True when it allows, false when it denies.
    pub allow: bool,
    /// `*`, `Tcp`, `Udp`, ...
    pub protocol: String,
    /// Source prefixes, addresses or tags.
    pub sources: Vec<String>,
    /// Destination port ranges (`*`, `5986`, `5000-6000`).
    pub ports: Vec<String>,
}

/// Every rule of a network security group body (`properties.securityRules`
/// and `properties.defaultSecurityRules`), or why one cannot be read.
pub fn rules_of(nsg: &Value) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for key in ["securityRules", "defaultSecurityRules"] {
        let listed = nsg
            .pointer(&format!("/properties/{key}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for rule in listed {
            let name = rule
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)")
                .to_string();
            let text = |field: &str| {
                rule.pointer(&format!("/properties/{field}"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let list = |one: &str, many: &str| -> Vec<String> {
                let mut all: Vec<String> = text(one).into_iter().collect();
                if let Some(items) = rule
                    .pointer(&format!("/properties/{many}"))
                    .and_then(Value::as_array)
                {
                    all.extend(items.iter().filter_map(Value::as_str).map(str::to_string));
                }
                all
            };
            let priority = rule
                .pointer("/properties/priority")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| format!("rule {name} has no priority"))?;
            let direction = text("direction").unwrap_or_default();
            let access = text("access").unwrap_or_default();
            rules.push(Rule {
                inbound: direction.eq_ignore_ascii_case("Inbound"),
                allow: match access.to_ascii_lowercase().as_str() {
                    "allow" => true,
                    "deny" => false,
                    other => return Err(format!("rule {name} has access {other:?}")),
                },
                protocol: text("protocol").unwrap_or_else(|| "*".into()),
                sources: list("sourceAddressPrefix", "sourceAddressPrefixes"),
                ports: list("destinationPortRange", "destinationPortRanges"),
                priority,
                name,
            });
        }
    }
    rules.sort_by_key(|r| r.priority);
    Ok(rules)
}

/// An IPv4 prefix (`10.42.0.0/27`; an address is a /32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The network address.
    pub address: Ipv4Addr,
    /// Its length.
    pub length: u8,
}

impl Prefix {
    /// Parses `a.b.c.d/n` or `a.b.c.d`.
    pub fn parse(text: &str) -> Option<Prefix> {
        let (address, length) = match text.trim().split_once('/') {
            Some((a, l)) => (a, l.parse::<u8>().ok().filter(|l| *l <= 32)?),
            None => (text.trim(), 32),
        };
        Some(Prefix {
            address: address.parse().ok()?,
            length,
        })
    }

    fn mask(self) -> u32 {
        if self.length == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.length))
        }
    }

    /// True when `address` is in the prefix.
    pub fn contains(self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.mask() == u32::from(self.address) & self.mask()
    }

    /// The prefix's `n`th address (`10.42.0.0/27`, 4: `10.42.0.4`).
    pub fn nth(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from((u32::from(self.address) & self.mask()).wrapping_add(n))
    }
}

/// An inbound TCP connection to ask about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Where it comes from.
    pub source: Ipv4Addr,
    /// The port it goes to.
    pub port: u16,
}

/// How a flow is decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Admitted by this rule.
    Allowed(String),
    /// Refused by this rule (or by none matching: nothing admits it).
    Denied(String),
    /// A rule before any decision cannot be evaluated here.
    Unknown(String),
}

/// How `rules` decide the inbound TCP `flow`, in a network whose address
/// space is `network` (the `VirtualNetwork` tag).
pub fn decide(rules: &[Rule], network: &[Prefix], flow: Flow) -> Decision {
    for rule in rules.iter().filter(|r| r.inbound) {
        let protocol = rule.protocol.eq_ignore_ascii_case("tcp") || rule.protocol == "*";
        if !protocol || !rule.ports.iter().any(|p| port_matches(p, flow.port)) {
            continue;
        }
        let mut matched = false;
        for source in &rule.sources {
            match source_matches(source, network, flow.source) {
                Some(true) => matched = true,
                Some(false) => {}
                None => {
                    return Decision::Unknown(format!(
                        "rule {} (priority {}) names {source}, which this check cannot evaluate",
                        rule.name, rule.priority
                    ));
                }
            }
        }
        if matched {
            return if rule.allow {
                Decision::Allowed(rule.name.clone())
            } else {
                Decision::Denied(rule.name.clone())
            };
        }
    }
    Decision::Denied("no rule admits it".into())
}

fn port_matches(range: &str, port: u16) -> bool {
    let range = range.trim();
    if range == "*" {
        return true;
    }
    match range.split_once('-') {
        Some((low, high)) => match (low.trim().parse::<u16>(), high.trim().parse::<u16>()) {
            (Ok(low), Ok(high)) => (low..=high).contains(&port),
            _ => false,
        },
        None => range.parse::<u16>() == Ok(port),
    }
}

/// Whether `source` (a rule's prefix, address or tag) covers `address`;
/// `None` for a tag this check does not know.
fn source_matches(source: &str, network: &[Prefix], address: Ipv4Addr) -> Option<bool> {
    let in_network = network.iter().any(|p| p.contains(address));
    match source.trim() {
        "*" | "Any" => Some(true),
        tag if tag.eq_ignore_ascii_case("VirtualNetwork") => Some(in_network),
        tag if tag.eq_ignore_ascii_case("Internet") => Some(!in_network),
        tag if tag.eq_ignore_ascii_case("AzureLoadBalancer") => {
            Some(address == Ipv4Addr::new(168, 63, 129, 16))
        }
        other => Prefix::parse(other).map(|p| p.contains(address)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A group shaped as Resource Manager returns it: the factory's two
    /// rules and Azure's six default ones.
    fn factory_nsg() -> Value {
        let rule = |name: &str,
                    priority: u32,
                    direction: &str,
                    access: &str,
                    source: &str,
                    port: &str| {
            json!({ "name": name, "properties": {
                "priority": priority, "direction": direction, "access": access, "protocol": if port == "*" { "*" } else { "Tcp" },
                "sourceAddressPrefix": source, "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": port
            }})
        };
        json!({ "properties": {
            "securityRules": [
                rule("allow-winrm-from-environment", 100, "Inbound", "Allow", "10.42.0.0/27", "5986"),
                rule("deny-all-other-inbound", 4096, "Inbound", "Deny", "*", "*")
            ],
            "defaultSecurityRules": [
                rule("AllowVnetInBound", 65000, "Inbound", "Allow", "VirtualNetwork", "*"),
                rule("AllowAzureLoadBalancerInBound", 65001, "Inbound", "Allow", "AzureLoadBalancer", "*"),
                rule("DenyAllInBound", 65500, "Inbound", "Deny", "*", "*"),
                rule("AllowVnetOutBound", 65000, "Outbound", "Allow", "VirtualNetwork", "*"),
                rule("AllowInternetOutBound", 65001, "Outbound", "Allow", "*", "*"),
                rule("DenyAllOutBound", 65500, "Outbound", "Deny", "*", "*")
            ]
        }})
    }

    fn network() -> Vec<Prefix> {
        vec![Prefix::parse("10.42.0.0/24").unwrap()]
    }

    fn flow(source: &str, port: u16) -> Flow {
        Flow {
            source: source.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn the_factory_group_admits_winrm_from_the_environment_only() {
        let rules = rules_of(&factory_nsg()).unwrap();
        assert_eq!(rules.len(), 8);
        assert_eq!(
            decide(&rules, &network(), flow("10.42.0.4", 5986)),
            Decision::Allowed("allow-winrm-from-environment".into())
        );
        for (source, port) in [
            ("10.42.0.70", 5986),
            ("203.0.113.10", 5986),
            ("203.0.113.10", 3389),
            ("10.42.0.4", 3389),
        ] {
            assert_eq!(
                decide(&rules, &network(), flow(source, port)),
                Decision::Denied("deny-all-other-inbound".into()),
                "{source}:{port}"
            );
        }
    }

    #[test]
    fn without_the_factory_deny_rule_the_defaults_admit_the_whole_network() {
        let mut nsg = factory_nsg();
        nsg["properties"]["securityRules"]
            .as_array_mut()
            .unwrap()
            .pop();
        let rules = rules_of(&nsg).unwrap();
        assert_eq!(
            decide(&rules, &network(), flow("10.42.0.70", 5986)),
            Decision::Allowed("AllowVnetInBound".into())
        );
        assert_eq!(
            decide(&rules, &network(), flow("203.0.113.10", 5986)),
            Decision::Denied("DenyAllInBound".into())
        );
    }

    #[test]
    fn ranges_lists_and_unknown_tags_are_read_as_azure_reads_them() {
        let nsg = json!({ "properties": { "securityRules": [
            { "name": "storage", "properties": { "priority": 90, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                "sourceAddressPrefix": "Storage", "destinationPortRange": "443" } },
            { "name": "winrm-range", "properties": { "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                "sourceAddressPrefixes": ["192.0.2.0/24", "198.51.100.7"], "destinationPortRanges": ["5985-5986", "22"] } }
        ]}});
        let rules = rules_of(&nsg).unwrap();
        assert_eq!(
            decide(&rules, &network(), flow("198.51.100.7", 5986)),
            Decision::Allowed("winrm-range".into())
        );
        assert_eq!(
            decide(&rules, &network(), flow("192.0.2.9", 22)),
            Decision::Allowed("winrm-range".into())
        );
        assert_eq!(
            decide(&rules, &network(), flow("192.0.2.9", 3389)),
            Decision::Denied("no rule admits it".into())
        );
        assert!(
            matches!(decide(&rules, &network(), flow("192.0.2.9", 443)), Decision::Unknown(why) if why.contains("Storage"))
        );
        assert!(rules_of(&json!({ "properties": { "securityRules": [{ "name": "x", "properties": { "access": "Allow" } }] } })).is_err());
    }

    #[test]
    fn prefixes_contain_what_they_should() {
        let p = Prefix::parse("10.42.0.0/27").unwrap();
        assert!(p.contains("10.42.0.31".parse().unwrap()));
        assert!(!p.contains("10.42.0.32".parse().unwrap()));
        assert_eq!(p.nth(4), "10.42.0.4".parse::<Ipv4Addr>().unwrap());
        assert!(
            Prefix::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Prefix::parse("10.0.0.0/33").is_none());
        assert!(Prefix::parse("vms").is_none());
    }
}
