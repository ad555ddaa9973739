//! What the cluster's controllers would do that the store does by itself: cluster IPs and
//! NodePorts, a StatefulSet's volume claims, rollouts completing.

use super::*;

impl State {
    /// Allocates a Service cluster IP.
    pub fn alloc_ip(&mut self) -> String {
        self.ip_counter += 1;
        let c = self.ip_counter;
        format!("10.43.{}.{}", (c / 250) % 256, c % 250 + 1)
    }

    /// Allocates a free NodePort.
    pub fn alloc_node_port(&mut self) -> u64 {
        let used: Vec<u64> = self
            .objects
            .iter()
            .filter(|((g, pl, _, _), _)| g.is_empty() && pl == "services")
            .flat_map(|(_, v)| {
                v["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["nodePort"].as_u64())
                    .collect::<Vec<_>>()
            })
            .collect();
        loop {
            self.node_port_counter = (self.node_port_counter + 7919) % 2768;
            let port = 30000 + self.node_port_counter as u64;
            if !used.contains(&port) {
                return port;
            }
        }
    }

    /// Rejects a Service whose cluster IP or node ports another Service already holds.
    pub(super) fn check_allocations(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        svc: &Value,
    ) -> Result<(), ApiError> {
        let others: Vec<&Value> = self
            .objects
            .iter()
            .filter(|((g, pl, n, nm), _)| {
                g.is_empty() && pl == "services" && !(n == ns && nm == name)
            })
            .map(|(_, v)| v)
            .collect();
        let mut causes = Vec::new();
        if let Some(ip) = svc["spec"]["clusterIP"].as_str()
            && !ip.is_empty()
            && ip != "None"
            && others.iter().any(|o| o["spec"]["clusterIP"] == ip)
        {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                field: "spec.clusterIPs".into(),
                message: format!(
                    "Invalid value: [{ip:?}]: failed to allocate IP {ip}: provided IP is already allocated"
                ),
            });
        }
        for (i, p) in svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(np) = p["nodePort"].as_u64() else {
                continue;
            };
            let taken = others.iter().any(|o| {
                o["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|q| q["nodePort"].as_u64() == Some(np))
            });
            if taken {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    field: format!("spec.ports[{i}].nodePort"),
                    message: format!("Invalid value: {np}: provided port is already allocated"),
                });
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(def, name, causes))
        }
    }

    /// The StatefulSet controller's claims: `<template>-<set>-<ordinal>` for every
    /// volumeClaimTemplate and replica, labelled with the template's labels and the set's
    /// selector, owned by the set when its retention policy deletes them.
    pub(super) fn create_claims(
        &mut self,
        sts: &Value,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let Some(pvc_def) = self.def_by_kind("v1", "PersistentVolumeClaim") else {
            return Ok(());
        };
        let replicas = sts["spec"]["replicas"].as_u64().unwrap_or(1);
        let templates = sts["spec"]["volumeClaimTemplates"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let owned = sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete";
        for t in templates {
            let Some(tname) = t["metadata"]["name"].as_str() else {
                continue;
            };
            for i in 0..replicas {
                let claim = format!("{tname}-{name}-{i}");
                if self.get(&pvc_def, ns, &claim).is_some() {
                    continue;
                }
                let mut labels = t["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                if let Some(sel) = sts["spec"]["selector"]["matchLabels"].as_object() {
                    labels.extend(sel.clone());
                }
                let mut meta = json!({"name": claim, "namespace": ns});
                if !labels.is_empty() {
                    meta["labels"] = Value::Object(labels);
                }
                if let Some(a) = t["metadata"].get("annotations") {
                    meta["annotations"] = a.clone();
                }
                if owned {
                    meta["ownerReferences"] = json!([{
                        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": name,
                        "uid": sts["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
                    }]);
                }
                let pvc = json!({
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": meta,
                    "spec": t["spec"].clone(),
                });
                self.update(
                    &pvc_def,
                    ns,
                    &claim,
                    pvc,
                    "kube-controller-manager",
                    &WriteParams::default(),
                    true,
                )?;
            }
        }
        Ok(())
    }

    /// Acts as the workload controllers after a rollout completed: a Deployment gets its
    /// `deployment.kubernetes.io/revision` annotation (bumped when the pod template changed),
    /// then the status reports every replica updated, ready and available at the current
    /// generation. A StatefulSet's claims are created as its controller creates them.
    ///
    /// # Errors
    /// 404 when the object is absent.
    pub fn complete_rollout(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let mut obj = self
            .get(def, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let auto = std::mem::replace(&mut self.auto_rollout, false);
        let result = (|| {
            if def.kind == "Deployment" && def.group == "apps" {
                let key = Self::key(def, ns, name);
                let template = obj["spec"]["template"].clone();
                let current: u64 =
                    obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                        .as_str()
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                let revision = match self.rollout_templates.get(&key) {
                    Some(t) if *t == template && current > 0 => current,
                    _ => current + 1,
                };
                self.rollout_templates.insert(key, template);
                if revision != current {
                    let mut new = obj.clone();
                    new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                        json!(revision.to_string());
                    obj = self.update(
                        def,
                        ns,
                        name,
                        new,
                        "kube-controller-manager",
                        &WriteParams::default(),
                        false,
                    )?;
                }
            }
            if def.kind == "StatefulSet" && def.group == "apps" {
                self.create_claims(&obj, ns, name)?;
            }
            let status = defaults::rolled_out_status(&obj, self.nodes);
            self.set_status(def, ns, name, status, "kube-controller-manager")
        })();
        self.auto_rollout = auto;
        result
    }
}
