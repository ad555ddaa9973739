//! Whether a workload has rolled out, read from its status as kubectl's rollout status reads it.

use serde_json::Value;

use crate::resource::{At, RolloutRule, kind_spec};

/// Where a workload's rollout stands, read from its status (kubectl rollout status' rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Observed, updated, ready and available at the current generation.
    Complete,
    /// Still going: progress text, and the unready condition (as `Available=False
    /// (MinimumReplicasUnavailable): ...`) or, without conditions, what is missing.
    Progressing {
        /// Counts, as `1/2 updated, 0/2 available`.
        progress: String,
        /// Why it is not done.
        condition: String,
    },
    /// It can no longer complete (a Deployment past its progress deadline).
    Failed(String),
}

/// The rollout state of a Deployment, StatefulSet or DaemonSet.
pub fn rollout(obj: &Value) -> Rollout {
    let n = |p: &str| obj.at(p).and_then(Value::as_i64);
    let generation = n("/metadata/generation").unwrap_or(0);
    let observed = n("/status/observedGeneration").unwrap_or(0);
    let conditions: Vec<&Value> = obj
        .at("/status/conditions")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let unready = || {
        conditions.iter().find(|c| c["status"] != "True").map(|c| {
            format!(
                "{}={} ({}): {}",
                c["type"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?"),
                c["reason"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            )
        })
    };
    let rule = kind_spec(obj["kind"].as_str().unwrap_or_default()).rollout;
    if observed < generation {
        return Rollout::Progressing {
            progress: "waiting for the controller".into(),
            condition: unready().unwrap_or_else(|| {
                format!("status.observedGeneration {observed} < metadata.generation {generation}")
            }),
        };
    }
    let (want, parts): (i64, Vec<(&str, i64)>) = match rule {
        Some(RolloutRule::Deployment) => {
            if let Some(c) = conditions
                .iter()
                .find(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
            {
                return Rollout::Failed(format!(
                    "Progressing=False (ProgressDeadlineExceeded): {}",
                    c["message"].as_str().unwrap_or("")
                ));
            }
            let want = n("/spec/replicas").unwrap_or(1);
            let total = n("/status/replicas").unwrap_or(0);
            let parts = vec![
                ("updated", n("/status/updatedReplicas").unwrap_or(0)),
                ("available", n("/status/availableReplicas").unwrap_or(0)),
            ];
            // Old replicas still running count against completion.
            if total > want {
                return Rollout::Progressing {
                    progress: format!("{} old replicas pending termination", total - want),
                    condition: unready()
                        .unwrap_or_else(|| format!("{total} replicas, {want} wanted")),
                };
            }
            (want, parts)
        }
        Some(RolloutRule::StatefulSet) => {
            let want = n("/spec/replicas").unwrap_or(1);
            let partition = n("/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0);
            let rev_ok = obj.at("/status/updateRevision") == obj.at("/status/currentRevision")
                || partition > 0;
            let parts = vec![
                ("ready", n("/status/readyReplicas").unwrap_or(0)),
                (
                    "updated",
                    n("/status/updatedReplicas").unwrap_or(0) + partition.min(want),
                ),
            ];
            if !rev_ok && parts.iter().all(|(_, v)| *v >= want) {
                return Rollout::Progressing {
                    progress: "waiting for the update revision".into(),
                    condition: "status.currentRevision != status.updateRevision".into(),
                };
            }
            (want, parts)
        }
        Some(RolloutRule::DaemonSet) => {
            let want = n("/status/desiredNumberScheduled").unwrap_or(0);
            (
                want,
                vec![
                    ("updated", n("/status/updatedNumberScheduled").unwrap_or(0)),
                    ("available", n("/status/numberAvailable").unwrap_or(0)),
                ],
            )
        }
        None => return Rollout::Complete,
    };
    if parts.iter().all(|(_, v)| *v >= want) {
        return Rollout::Complete;
    }
    let progress = parts
        .iter()
        .map(|(what, v)| format!("{v}/{want} {what}"))
        .collect::<Vec<_>>()
        .join(", ");
    let condition = unready().unwrap_or_else(|| progress.clone());
    Rollout::Progressing {
        progress,
        condition,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rollout_reads_status() {
        let d = json!({"kind": "Deployment", "metadata": {"generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1,
              "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "no"}]}});
        assert!(matches!(rollout(&d), Rollout::Progressing { condition, .. }
            if condition.starts_with("Available=False (MinimumReplicasUnavailable)")));
        let mut done = d.clone();
        done["status"]["availableReplicas"] = json!(2);
        assert_eq!(rollout(&done), Rollout::Complete);
    }

    #[test]
    fn statefulsets_and_daemonsets_roll_out_by_their_own_counts() {
        let sts = json!({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2,
                       "currentRevision": "a", "updateRevision": "b"}});
        assert!(matches!(rollout(&sts), Rollout::Progressing { .. }));
        let mut done = sts.clone();
        done["status"]["currentRevision"] = json!("b");
        assert_eq!(rollout(&done), Rollout::Complete);
        let ds = json!({"kind": "DaemonSet", "metadata": {"generation": 3},
            "status": {"observedGeneration": 3, "desiredNumberScheduled": 2,
                       "updatedNumberScheduled": 2, "numberAvailable": 1}});
        assert!(
            matches!(rollout(&ds), Rollout::Progressing { progress, .. } if progress == "2/2 updated, 1/2 available")
        );
        let stale = json!({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1}});
        assert!(
            matches!(rollout(&stale), Rollout::Progressing { condition, .. }
            if condition.contains("observedGeneration 1 < metadata.generation 2"))
        );
    }
}
