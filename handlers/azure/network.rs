//! The factory's build network as the code names it: a subnet's resource id
//! (the test VM's NIC joins it; `doctor --url` checks the network around
//! it), and the Microsoft.Network API version the factory's calls use.

use std::fmt;

/// API version of the virtual network, NIC, network security group and
/// public address calls (Microsoft.Network,
/// `specification/network/resource-manager/Microsoft.Network/stable/2024-03-01`).
pub const NETWORK_API: &str = "2024-03-01";

/// A subnet's resource id, parsed:
/// `/subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.Network/virtualNetworks/<n>/subnets/<subnet>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetId {
    /// The subscription.
    pub subscription: String,
    /// The network's resource group.
    pub resource_group: String,
    /// The virtual network.
    pub network: String,
    /// The subnet.
    pub subnet: String,
}

impl SubnetId {
    /// Parses a subnet's resource id (segment names compared without
    /// regard to case, as Resource Manager does); `None` for anything else.
    pub fn parse(id: &str) -> Option<SubnetId> {
        let parts: Vec<&str> = id.strip_prefix('/')?.split('/').collect();
        let [
            s,
            subscription,
            rg,
            resource_group,
            p,
            provider,
            v,
            network,
            sn,
            subnet,
        ] = parts.as_slice()
        else {
            return None;
        };
        let named = |segment: &str, name: &str| segment.eq_ignore_ascii_case(name);
        let plain = |value: &str| {
            !value.is_empty()
                && value.len() <= 90
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
        };
        let ok = named(s, "subscriptions")
            && named(rg, "resourceGroups")
            && named(p, "providers")
            && named(provider, "Microsoft.Network")
            && named(v, "virtualNetworks")
            && named(sn, "subnets")
            && [subscription, resource_group, network, subnet]
                .iter()
                .all(|v| plain(v));
        ok.then(|| SubnetId {
            subscription: subscription.to_string(),
            resource_group: resource_group.to_string(),
            network: network.to_string(),
            subnet: subnet.to_string(),
        })
    }

    /// The virtual network's resource id.
    pub fn network_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/virtualNetworks/{}",
            self.subscription, self.resource_group, self.network
        )
    }
}

impl fmt::Display for SubnetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/subnets/{}", self.network_id(), self.subnet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_id_is_parsed_and_written_back_and_nothing_else_is_one() {
        let id = "/subscriptions/sub-1/resourceGroups/rg-f-build/providers/Microsoft.Network/virtualNetworks/vnet-imgf-f/subnets/vms";
        let subnet = SubnetId::parse(id).expect("a subnet id");
        assert_eq!(subnet.network, "vnet-imgf-f");
        assert_eq!(subnet.subnet, "vms");
        assert_eq!(subnet.to_string(), id);
        assert!(SubnetId::parse(&id.to_lowercase()).is_some());
        for bad in [
            "",
            "vms",
            "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v",
            "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Compute/virtualNetworks/v/subnets/s",
            "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s/x",
            "/subscriptions/sub-1/resourceGroups/r g/providers/Microsoft.Network/virtualNetworks/v/subnets/s",
            "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s?x=1",
        ] {
            assert_eq!(SubnetId::parse(bad), None, "{bad}");
        }
    }
}
