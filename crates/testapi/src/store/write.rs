//! The write paths as the real server runs them: create and update, server-side apply with
//! field managers and conflicts, status, delete, and the checks before any write.

use super::*;

impl State {
    /// Final step of every write: defaulting, validation, server-set fields, generation,
    /// resourceVersion, storage and events. Returns the object as stored (or as it would be
    /// stored, for dry runs).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        old: Option<&Value>,
        mut new: Value,
        entries: Vec<Entry>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        {
            let meta = new
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("object is not a JSON object"))?
                .entry("metadata")
                .or_insert_with(|| json!({}));
            if !meta.is_object() {
                *meta = json!({});
            }
            meta["name"] = json!(name);
            if def.namespaced {
                meta["namespace"] = json!(ns);
            } else if let Some(m) = meta.as_object_mut() {
                m.remove("namespace");
            }
        }
        new["apiVersion"] = json!(def.api_version());
        new["kind"] = json!(def.kind);
        defaults::apply(self, def, old, &mut new);
        if let Some(old) = old {
            defaults::validate_update(def, name, old, &new)?;
        }
        defaults::validate(def, name, &new)?;
        if def.kind == "Service" && def.group.is_empty() {
            self.check_allocations(def, ns, name, &new)?;
        }
        self.admit(def, ns, name, old, dry_run)?;
        let meta = new
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("metadata is an object");
        for k in SERVER_META.iter().filter(|k| **k != "name") {
            meta.remove(*k);
        }
        let mut ordered = Map::new();
        ordered.insert("name".into(), json!(name));
        if def.namespaced {
            ordered.insert("namespace".into(), json!(ns));
        }
        let (uid, created, generation) = match old {
            Some(o) => {
                let mut generation = o["metadata"]["generation"].as_i64();
                if def.generation && o.get("spec") != new.get("spec") {
                    generation = Some(generation.unwrap_or(0) + 1);
                }
                (
                    meta_str(o, "uid").unwrap_or_default().to_string(),
                    meta_str(o, "creationTimestamp")
                        .unwrap_or_default()
                        .to_string(),
                    generation,
                )
            }
            None => (self.next_uid(), now_rfc3339(), def.generation.then_some(1)),
        };
        ordered.insert("uid".into(), json!(uid));
        ordered.insert("resourceVersion".into(), json!(""));
        if let Some(g) = generation {
            ordered.insert("generation".into(), json!(g));
        }
        ordered.insert("creationTimestamp".into(), json!(created));
        if let Some(o) = old
            && let Some(dt) = o["metadata"].get("deletionTimestamp")
        {
            ordered.insert("deletionTimestamp".into(), dt.clone());
        }
        let meta = new
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("metadata is an object");
        for (k, v) in std::mem::take(meta) {
            if k != "name" && k != "namespace" {
                ordered.insert(k, v);
            }
        }
        let mut entries: Vec<Entry> = entries.into_iter().filter(|e| !e.set.is_empty()).collect();
        // The real server's order: operation, time, manager, apiVersion, subresource.
        entries.sort_by(|a, b| {
            (
                &a.operation,
                &a.time,
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    &b.operation,
                    &b.time,
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        if !entries.is_empty() {
            ordered.insert(
                "managedFields".into(),
                Value::Array(entries.iter().map(Entry::to_json).collect()),
            );
        }
        *meta = ordered;
        let new = order_top(new);

        // A write that changes nothing but managedFields times is no write (the real
        // server's IgnoreManagedFieldsTimestampsTransformer): the old object, old times and
        // all, is the answer. A changed entry order is a change.
        if let Some(o) = old {
            let mut cmp_new = without_times(&new);
            cmp_new["metadata"]["resourceVersion"] = o["metadata"]["resourceVersion"].clone();
            if cmp_new == without_times(o) {
                return Ok(o.clone());
            }
        }
        let mut new = new;
        if dry_run {
            match old {
                Some(o) => {
                    new["metadata"]["resourceVersion"] = o["metadata"]["resourceVersion"].clone()
                }
                None => {
                    new["metadata"]
                        .as_object_mut()
                        .expect("metadata")
                        .remove("resourceVersion");
                }
            }
            return Ok(new);
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(Self::key(def, ns, name), new.clone());
        self.emit(
            def,
            if old.is_some() { "MODIFIED" } else { "ADDED" },
            new.clone(),
        );
        if def.group == "apiextensions.k8s.io" {
            self.refresh_defs();
        }
        if self.auto_rollout
            && matches!(
                def.kind.as_str(),
                "Deployment" | "StatefulSet" | "DaemonSet"
            )
        {
            return self.complete_rollout(def, ns, name);
        }
        Ok(new)
    }

    /// Server-side apply of `body` (PATCH with `application/apply-patch+yaml`).
    ///
    /// # Errors
    /// 400 for a missing field manager or mismatched name, 404 for a missing namespace,
    /// 409 for conflicts with other managers (unless forced), 422 for invalid updates.
    pub fn apply(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        body: Value,
        params: &WriteParams,
    ) -> Result<Value, ApiError> {
        let manager = params
            .manager
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| ApiError::bad_request("fieldManager is required for apply requests"))?;
        let status_sub = params.subresource == "status";
        check_body(def, ns, name, &body, true)?;
        let live = self.get(def, ns, name).cloned();
        if live.is_none() {
            if status_sub {
                return Err(ApiError::not_found(def, name));
            }
            self.require_namespace(def, ns)?;
            self.require_live_namespace(def, ns, name)?;
        }
        if let (Some(l), Some(want)) = (&live, meta_str(&body, "resourceVersion"))
            && !want.is_empty()
            && meta_str(l, "resourceVersion") != Some(want)
        {
            return Err(ApiError::stale(def, name));
        }
        let schema = Schema::new(&def.group, &def.kind);
        let mut applied = body;
        strip_server_fields(&mut applied);
        if status_sub {
            if let Some(m) = applied.as_object_mut() {
                m.retain(|k, _| {
                    matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status")
                });
            }
            if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
                m.retain(|k, _| k == "name" || k == "namespace");
            }
        } else if status_ignored(def)
            && let Some(m) = applied.as_object_mut()
        {
            m.remove("status");
        }
        let mut dups = fieldset::duplicate_keys(&schema, &applied);
        dups.extend(
            fieldset::undeclared_fields(&schema, &applied)
                .into_iter()
                .map(|(p, _)| format!("{p}: field not declared in schema")),
        );
        if !dups.is_empty() {
            let gv = if def.group.is_empty() {
                format!("/{}", def.version)
            } else {
                def.api_version()
            };
            let errs = if dups.len() == 1 {
                dups[0].clone()
            } else {
                format!("errors:\n  {}", dups.join("\n  "))
            };
            return Err(ApiError::internal(format!(
                "failed to create typed patch object ({ns}/{name}; {gv}, Kind={}): {errs}",
                def.kind
            )));
        }
        let skeleton =
            json!({"apiVersion": def.api_version(), "kind": def.kind, "metadata": {"name": name}});
        let live_c = live.as_ref().map(without_managed).unwrap_or(skeleton);
        let mut entries = live.as_ref().map(entries_of).unwrap_or_default();

        let mut new_set = fieldset::to_field_set(&schema, &applied);
        strip_set(&mut new_set);
        let mut merged = fieldset::merge(&schema, &live_c, &applied);
        let mine = entries
            .iter()
            .position(|e| e.same_identity(&manager, "Apply", &params.subresource, ""));
        let last = mine.map(|i| entries[i].set.clone()).unwrap_or_default();
        let others = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != mine)
            .fold(FieldSet::default(), |acc, (_, e)| acc.union(&e.set));
        let keep = new_set.union(&others);
        fieldset::prune(&schema, &mut merged, &last.difference(&new_set), &keep);

        let cmp = fieldset::compare(&schema, &live_c, &merged);
        let changed = cmp.modified.union(&cmp.added);
        let mut conflicts: Vec<(usize, Vec<Vec<String>>)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if Some(i) == mine {
                continue;
            }
            let c = e.set.intersection(&changed);
            if !c.is_empty() {
                conflicts.push((i, c.paths()));
            }
        }
        if !conflicts.is_empty() && !params.force {
            return Err(conflict_error(&entries, &conflicts));
        }
        for (i, e) in entries.iter_mut().enumerate() {
            if Some(i) == mine {
                continue;
            }
            e.set = e.set.difference(&changed).difference(&cmp.removed);
        }
        let object_changed = merged != live_c;
        let now = now_rfc3339();
        let entry = Entry {
            manager: manager.clone(),
            operation: "Apply".into(),
            api_version: def.api_version(),
            time: now.clone(),
            subresource: params.subresource.clone(),
            set: new_set,
        };
        match mine {
            Some(i) => {
                let old = &entries[i];
                let time = if object_changed
                    || old.set != entry.set
                    || old.api_version != entry.api_version
                {
                    now
                } else {
                    old.time.clone()
                };
                entries[i] = Entry { time, ..entry };
            }
            None => entries.push(entry),
        }
        let out = self.commit(
            def,
            ns,
            name,
            live.as_ref(),
            merged,
            entries,
            params.dry_run,
        )?;
        Ok(out)
    }

    /// An Update-operation write (POST, PUT, merge/strategic patch, status writes): `new` is
    /// the complete desired object; ownership of changed fields moves to `manager`.
    ///
    /// # Errors
    /// 404/409/422 as the real server.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        new: Value,
        manager: &str,
        params: &WriteParams,
        create: bool,
    ) -> Result<Value, ApiError> {
        let live = self.get(def, ns, name).cloned();
        match (&live, create) {
            (Some(_), true) => return Err(ApiError::already_exists(def, name)),
            (None, false) => return Err(ApiError::not_found(def, name)),
            (None, true) => {
                self.require_namespace(def, ns)?;
                self.require_live_namespace(def, ns, name)?;
            }
            _ => {}
        }
        if let (Some(l), Some(want)) = (&live, meta_str(&new, "resourceVersion"))
            && !want.is_empty()
            && meta_str(l, "resourceVersion") != Some(want)
        {
            return Err(ApiError::stale(def, name));
        }
        let schema = Schema::new(&def.group, &def.kind);
        let skeleton =
            json!({"apiVersion": def.api_version(), "kind": def.kind, "metadata": {"name": name}});
        let live_c = live.as_ref().map(without_managed).unwrap_or(skeleton);
        let mut new_c = without_managed(&new);
        let status_sub = params.subresource == "status";
        if status_sub {
            let mut s = live_c.clone();
            match new_c.get("status") {
                Some(st) => s["status"] = st.clone(),
                None => {
                    if let Some(m) = s.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            new_c = s;
        } else if status_ignored(def) {
            match live_c.get("status") {
                Some(st) => new_c["status"] = st.clone(),
                None => {
                    if let Some(m) = new_c.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        // The real server decodes (and so defaults) the new object before the field manager
        // compares it: Update managers own the defaults they caused.
        if !status_sub && new_c.is_object() {
            if !new_c["metadata"].is_object() {
                new_c["metadata"] = json!({"name": name});
            }
            defaults::apply(self, def, live.as_ref(), &mut new_c);
            // The Namespace strategy (after the field manager) adds the `kubernetes`
            // finalizer: the writer does not own it.
            if def.group.is_empty()
                && def.kind == "Namespace"
                && new["spec"].get("finalizers").is_none()
                && let Some(spec) = new_c.get_mut("spec").and_then(Value::as_object_mut)
            {
                spec.remove("finalizers");
                if spec.is_empty() {
                    new_c.as_object_mut().map(|m| m.remove("spec"));
                }
            }
        }
        // Server-set metadata comes from the live object.
        if let Some(m) = new_c.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in SERVER_META.iter().filter(|k| **k != "name") {
                m.remove(*k);
            }
        }
        let mut live_cmp = live_c.clone();
        if let Some(m) = live_cmp.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in SERVER_META.iter().filter(|k| **k != "name") {
                m.remove(*k);
            }
        }
        let cmp = fieldset::compare(&schema, &live_cmp, &new_c);
        let changed = cmp.modified.union(&cmp.added);
        // A client may rewrite managedFields (kubectl does, migrating client-side apply
        // ownership); a non-empty list that differs from the live one is taken as given
        // (entries without a manager are dropped, so `[{}]` clears them all).
        let live_mf = live
            .as_ref()
            .map(|l| l["metadata"]["managedFields"].clone());
        let given = &new["metadata"]["managedFields"];
        let mut entries =
            if given.as_array().is_some_and(|a| !a.is_empty()) && Some(given) != live_mf.as_ref() {
                entries_of(&new)
                    .into_iter()
                    .filter(|e| !e.manager.is_empty())
                    .collect()
            } else {
                live.as_ref().map(entries_of).unwrap_or_default()
            };
        let api = def.api_version();
        let mine = entries
            .iter()
            .position(|e| e.same_identity(manager, "Update", &params.subresource, &api));
        for (i, e) in entries.iter_mut().enumerate() {
            if Some(i) != mine {
                e.set = e.set.difference(&changed).difference(&cmp.removed);
            }
        }
        let prev = mine.map(|i| entries[i].set.clone()).unwrap_or_default();
        let mut set = prev.difference(&cmp.removed).union(&changed);
        strip_set(&mut set);
        if status_sub {
            let keep_status = set.get(&p(&["status"])).cloned();
            set = FieldSet::default();
            if let Some(s) = keep_status {
                set.children.insert("f:status".into(), s);
            }
        } else if status_ignored(def) {
            set = set.without_subtrees(&[p(&["status"])]);
        }
        unset_struct_members(&mut set);
        let time = if set != prev || new_c != live_cmp {
            now_rfc3339()
        } else {
            mine.map(|i| entries[i].time.clone())
                .unwrap_or_else(now_rfc3339)
        };
        let entry = Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api,
            time,
            subresource: params.subresource.clone(),
            set,
        };
        match mine {
            Some(i) => entries[i] = entry,
            None => entries.push(entry),
        }
        self.commit(def, ns, name, live.as_ref(), new_c, entries, params.dry_run)
    }

    /// A `TokenRequest` for a ServiceAccount (`POST .../serviceaccounts/<name>/token`): issues
    /// a bearer token that then acts as that ServiceAccount. The answer is shaped as the real
    /// server's: the ServiceAccount's name, namespace, uid and creationTimestamp, an `Update`
    /// entry for the token subresource, no resourceVersion.
    ///
    /// # Errors
    /// 404 when the ServiceAccount does not exist.
    pub fn token_request(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        body: &Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let sa = self
            .get(def, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let mut spec = body["spec"].as_object().cloned().unwrap_or_default();
        let secs = spec
            .get("expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(3600);
        let mut out_spec = Map::new();
        out_spec.insert(
            "audiences".into(),
            spec.remove("audiences")
                .unwrap_or_else(|| json!(["https://kubernetes.default.svc.cluster.local"])),
        );
        out_spec.insert("expirationSeconds".into(), json!(secs));
        out_spec.insert(
            "boundObjectRef".into(),
            spec.remove("boundObjectRef").unwrap_or(Value::Null),
        );
        let schema = Schema::new("authentication.k8s.io", "TokenRequest");
        let set = fieldset::to_field_set(&schema, &json!({"spec": body["spec"].clone()}));
        let now = now_rfc3339();
        let mut meta = Map::new();
        meta.insert("name".into(), json!(name));
        meta.insert("namespace".into(), json!(ns));
        meta.insert("uid".into(), sa["metadata"]["uid"].clone());
        meta.insert(
            "creationTimestamp".into(),
            sa["metadata"]["creationTimestamp"].clone(),
        );
        if !set.is_empty() {
            let entry = Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: "authentication.k8s.io/v1".into(),
                time: now.clone(),
                subresource: "token".into(),
                set,
            };
            meta.insert("managedFields".into(), json!([entry.to_json()]));
        }
        self.uid_counter += 1;
        let token = format!(
            "testapi-sa.{}",
            uid(self.uid_counter, self.seed).replace('-', "")
        );
        self.tokens.insert(
            token.clone(),
            crate::access::Identity::ServiceAccount {
                namespace: ns.to_string(),
                name: name.to_string(),
            },
        );
        let expires = crate::util::parse_rfc3339(&now).unwrap_or(0) + secs;
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": meta,
            "spec": out_spec,
            "status": {"token": token, "expirationTimestamp": crate::util::rfc3339(expires)},
        }))
    }

    /// With `fieldValidation=Strict`, rejects fields the type does not declare, as the real
    /// server's strict decoding does for create, update and (non-apply) patch.
    ///
    /// # Errors
    /// 400 BadRequest naming every unknown field.
    pub fn strict_check(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
        let schema = Schema::new(&def.group, &def.kind);
        let unknown = fieldset::undeclared_fields(&schema, obj);
        if unknown.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = unknown
            .iter()
            .map(|(_, j)| format!("unknown field {j:?}"))
            .collect();
        Err(ApiError::bad_request(format!(
            "{kind} in version {v:?} cannot be handled as a {kind}: strict decoding error: {}",
            list.join(", "),
            kind = def.kind,
            v = def.version,
        )))
    }

    /// Sets an object's status as a controller would (an Update on the `status` subresource).
    ///
    /// # Errors
    /// 404 when the object is absent.
    pub fn set_status(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        status: Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let live = self
            .get(def, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let mut new = live;
        new["status"] = status;
        let params = WriteParams {
            subresource: "status".into(),
            ..WriteParams::default()
        };
        let auto = std::mem::replace(&mut self.auto_rollout, false);
        let r = self.update(def, ns, name, new, manager, &params, false);
        self.auto_rollout = auto;
        r
    }

    /// Deletes an object (and, for a Namespace, everything in it).
    ///
    /// # Errors
    /// 404 when absent.
    pub fn delete(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let key = Self::key(def, ns, name);
        let obj = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
        let body = match def.kind.as_str() {
            "Namespace" => {
                let mut o = obj.clone();
                o["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                o["status"]["phase"] = json!("Terminating");
                o
            }
            "Pod" => obj.clone(),
            _ => crate::status::delete_success(def, name, &uid),
        };
        if dry_run {
            return Ok(body);
        }
        if def.kind == "Namespace" && def.group.is_empty() {
            // Like the real server: the namespace turns Terminating now; it and its contents
            // go away when the namespace controller (the reaper) finalizes it.
            if !self.terminating.contains_key(name) {
                self.rv += 1;
                let mut o = body.clone();
                o["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                self.objects.insert(key, o.clone());
                self.emit(def, "MODIFIED", o.clone());
                self.terminating
                    .insert(name.to_string(), std::time::Instant::now());
                return Ok(o);
            }
            return Ok(obj);
        }
        self.objects.remove(&key);
        self.rv += 1;
        let mut gone = obj;
        gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.emit(def, "DELETED", gone);
        if def.group == "apiextensions.k8s.io" {
            self.refresh_defs();
        }
        Ok(body)
    }

    /// Rejects creation in a namespace that is being deleted.
    ///
    /// # Errors
    /// 403 Forbidden, as the NamespaceLifecycle admission plugin answers.
    pub fn require_live_namespace(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        if def.namespaced && self.terminating.contains_key(ns) {
            return Err(ApiError::forbidden(
                def,
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }
}
