//! Which functions a request may name, and who runs them. A function runs only when it is on this
//! list: natively (this daemon answers from its own agent database and cluster state, Wazuh
//! framework or not) or in the Wazuh framework's own Python (the framework executor), whose
//! decoder checks again that the function is one the framework exposes to the distributed API.

use super::request::{Callable, Refusal};

/// The functions answered natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Native {
    /// `wazuh.core.agent.Agent.get_agents_overview`: what `cluster_control -a` sends.
    AgentsOverview,
    /// `wazuh.agent.get_agents`: `GET /agents`.
    GetAgents,
    /// `wazuh.agent.get_agents_summary_status`: `GET /agents/summary/status`.
    AgentsSummaryStatus,
    /// `wazuh.cluster.get_nodes_info`: `GET /cluster/nodes`.
    NodesInfo,
    /// `wazuh.cluster.get_health_nodes`: `GET /cluster/healthcheck`.
    HealthNodes,
    /// `wazuh.core.cluster.control.get_node_ruleset_integrity`: the master's ruleset digests,
    /// first step of `GET /cluster/ruleset/synchronization`.
    NodeRulesetIntegrity,
    /// `wazuh.cluster.get_ruleset_sync_status`: each node's digests against the master's.
    RulesetSyncStatus,
}

/// Who runs an allowed function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    Native(Native),
    /// In the Wazuh framework (refused with a clear error where there is none).
    Framework,
}

impl Native {
    /// Runs from the node's cluster state, not from the agent database.
    pub fn reads_cluster_state(self) -> bool {
        matches!(self, Native::NodesInfo | Native::HealthNodes)
    }
}

const NATIVE: [(&str, &str, Native); 7] = [
    (
        "wazuh.core.agent",
        "Agent.get_agents_overview",
        Native::AgentsOverview,
    ),
    ("wazuh.agent", "get_agents", Native::GetAgents),
    (
        "wazuh.agent",
        "get_agents_summary_status",
        Native::AgentsSummaryStatus,
    ),
    ("wazuh.cluster", "get_nodes_info", Native::NodesInfo),
    ("wazuh.cluster", "get_health_nodes", Native::HealthNodes),
    (
        "wazuh.core.cluster.control",
        "get_node_ruleset_integrity",
        Native::NodeRulesetIntegrity,
    ),
    (
        "wazuh.cluster",
        "get_ruleset_sync_status",
        Native::RulesetSyncStatus,
    ),
];

/// The framework modules whose public functions the API sends through the cluster: the SDK's
/// modules (`framework/wazuh/*.py`), the two core modules the API calls directly, and the API's
/// token functions.
const FRAMEWORK_MODULES: [&str; 24] = [
    "wazuh.active_response",
    "wazuh.agent",
    "wazuh.cdb_list",
    "wazuh.ciscat",
    "wazuh.cluster",
    "wazuh.decoder",
    "wazuh.event",
    "wazuh.logtest",
    "wazuh.manager",
    "wazuh.mitre",
    "wazuh.rootcheck",
    "wazuh.rule",
    "wazuh.sca",
    "wazuh.security",
    "wazuh.stats",
    "wazuh.syscheck",
    "wazuh.syscollector",
    "wazuh.task",
    "wazuh.vulnerability",
    "wazuh.core.agent",
    "wazuh.core.manager",
    "wazuh.core.cluster.control",
    "api.authentication",
    "api.spec",
];

/// Who runs `f`, or why it may not run at all.
pub fn classify(f: &Callable) -> Result<Execution, Refusal> {
    if let Some((_, _, native)) = NATIVE
        .iter()
        .find(|(module, qualname, _)| f.module == *module && f.qualname == *qualname)
    {
        return Ok(Execution::Native(*native));
    }
    let public = f.qualname.split('.').all(|part| !part.starts_with('_'));
    if f.bound || !public || !FRAMEWORK_MODULES.contains(&f.module.as_str()) {
        return Err(Refusal::NotAllowed(f.path()));
    }
    Ok(Execution::Framework)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(module: &str, qualname: &str) -> Callable {
        Callable {
            module: module.into(),
            qualname: qualname.into(),
            name: qualname.rsplit('.').next().unwrap_or_default().into(),
            bound: false,
        }
    }

    #[test]
    fn listed_functions_run_natively_or_in_the_framework_and_nothing_else_runs() {
        assert_eq!(
            classify(&f("wazuh.core.agent", "Agent.get_agents_overview")),
            Ok(Execution::Native(Native::AgentsOverview))
        );
        assert_eq!(
            classify(&f("wazuh.rule", "get_rules")),
            Ok(Execution::Framework)
        );
        for (module, qualname) in [
            ("os", "system"),
            ("subprocess", "run"),
            ("wazuh.core.utils", "execute"),
            ("wazuh.rule", "_private"),
            ("wazuh.rule", "get_rules.__globals__"),
        ] {
            assert!(
                matches!(classify(&f(module, qualname)), Err(Refusal::NotAllowed(_))),
                "{module}.{qualname}"
            );
        }
    }
}
