//! Reading the cluster for a plan: LISTs by the stack's selector (per namespace where the account
//! may only list there), GETs of desired objects the LISTs did not return, and the OpenAPI v3
//! documents that say how lists merge.

use super::*;

/// What the LISTs of a plan found so far ([`Kube::list`]), and how each kind was read, so that
/// a later call for more kinds or namespaces reads only what is new.
#[derive(Default)]
pub struct Listing {
    objects: BTreeMap<ResourceId, Value>,
    /// Kinds read, across namespaces or per namespace, and kinds the server does not serve.
    read: BTreeSet<(String, String)>,
    unknown_kinds: BTreeSet<(String, String)>,
    /// Kinds this account may LIST only per namespace: the 403's message, and the namespaces
    /// listed so far.
    per_namespace: Vec<(ApiResource, String, BTreeSet<String>)>,
    /// A kind and namespace this account may not LIST even there, with the server's message.
    denied: Vec<(String, String, String)>,
    details: Vec<String>,
}

impl Listing {
    /// The objects of a LIST answer of `ar`, by id.
    fn add(&mut self, ar: &ApiResource, mut list: Value) {
        let Value::Array(items) = list["items"].take() else {
            return;
        };
        for mut item in items {
            // LIST items carry no apiVersion/kind of their own.
            item["apiVersion"] = Value::String(ar.api_version.clone());
            item["kind"] = Value::String(ar.kind.clone());
            if let Some(id) = crate::resource::kube_id(&item) {
                self.objects.insert(id, item);
            }
        }
    }
}

impl Kube {
    /// LIST the stack's objects (its `selector`) of each kind in `kinds` across all namespaces,
    /// adding them to `listing`. Kinds and namespaces `listing` has read already are not read
    /// again: a plan lists what the stack applied before while it renders, then only what the
    /// rendered stack adds.
    ///
    /// An account that may not LIST a kind across namespaces (403) LISTs it in each of
    /// `namespaces` instead; a cluster-scoped kind it may not LIST is left to [`Kube::observe`]
    /// to read by GETs of the desired objects.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the LIST that failed.
    pub async fn list(
        &self,
        selector: &str,
        kinds: &BTreeSet<(String, String)>,
        namespaces: &BTreeSet<String>,
        listing: &mut Listing,
    ) -> Result<(), Error> {
        let lp = ListParams::default().labels(selector);
        let mut lists = Vec::new();
        for kind in kinds {
            if !listing.read.insert(kind.clone()) {
                continue;
            }
            let (api_version, kind) = kind;
            let Some((ar, caps)) = self.resource(api_version, kind) else {
                listing
                    .unknown_kinds
                    .insert((api_version.clone(), kind.clone()));
                continue;
            };
            let lp = &lp;
            lists.push(async move {
                let step = format!("list {}", ar.plural);
                let req = Request::new(url_path(&ar, None))
                    .list(lp)
                    .map_err(|e| backend(&step, e))?;
                match self.send(&step, req).await {
                    Ok(list) => Ok::<_, Error>((ar, caps, Ok(list))),
                    Err(e) if is_forbidden(&e) => Ok((ar, caps, Err(api_message(&e)))),
                    Err(e) => Err(failed(&step, e)),
                }
            });
        }
        // The LISTs are independent: wall time is the slowest one, not their sum.
        for (ar, caps, list) in futures_util::future::try_join_all(lists).await? {
            match list {
                Ok(list) => listing.add(&ar, list),
                Err(why) if matches!(caps.scope, Scope::Cluster) => listing.details.push(format!(
                    "kube: listing `{}` is forbidden for this account ({why}); reading the \
                     stack's own by name instead",
                    ar.plural
                )),
                // An account limited to namespaces: LIST in each namespace the stack uses.
                Err(why) => listing.per_namespace.push((ar, why, BTreeSet::new())),
            }
        }
        let todo: Vec<(usize, ApiResource, String)> = (listing.per_namespace.iter().enumerate())
            .flat_map(|(i, (ar, _, done))| {
                let new = namespaces.difference(done);
                new.map(move |ns| (i, ar.clone(), ns.clone()))
            })
            .collect();
        let per_ns = todo.into_iter().map(|(i, ar, ns)| {
            let lp = &lp;
            async move {
                let step = format!("list {} in namespace {ns}", ar.plural);
                let req = Request::new(url_path(&ar, Some(&ns)))
                    .list(lp)
                    .map_err(|e| backend(&step, e))?;
                match self.send(&step, req).await {
                    Ok(list) => Ok::<_, Error>((i, ar, ns, Ok(list))),
                    Err(e) if is_forbidden(&e) => Ok((i, ar, ns, Err(api_message(&e)))),
                    Err(e) => Err(failed(&step, e)),
                }
            }
        });
        for (i, ar, ns, list) in futures_util::future::try_join_all(per_ns).await? {
            listing.per_namespace[i].2.insert(ns.clone());
            match list {
                Ok(list) => listing.add(&ar, list),
                Err(why) => listing.denied.push((ar.kind, ns, why)),
            }
        }
        Ok(())
    }

    /// Observe the stack from what [`Kube::list`] found: then one GET for each id in `desired`
    /// the lists did not return (skipped when its namespace is itself desired and absent:
    /// nothing can exist in it). A desired object this account may not read at all is
    /// returned in [`Observed::forbidden`]. Each fallback taken is said in
    /// [`Observed::details`].
    ///
    /// # Errors
    /// [`Error::Backend`] naming the GET that failed.
    pub async fn observe(
        &self,
        listing: Listing,
        desired: &[ResourceId],
    ) -> Result<Observed, Error> {
        let Listing {
            objects,
            unknown_kinds,
            mut details,
            per_namespace,
            denied,
            ..
        } = listing;
        for (ar, why, namespaces) in &per_namespace {
            details.push(format!(
                "kube: listing `{}` across namespaces is forbidden for this account ({why}); \
                 listing in {} instead",
                ar.plural,
                namespaces
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut out = Observed {
            objects,
            unknown_kinds,
            details,
            ..Observed::default()
        };
        // Desired objects in a namespace the account may not list: not observable.
        for id in desired {
            if let ResourceId::Kube {
                namespace: Some(ns),
                kind,
                ..
            } = id
                && let Some((_, _, why)) = denied.iter().find(|(k, n, _)| k == kind && n == ns)
            {
                out.forbidden.insert(id.clone(), why.clone());
            }
        }
        let servable = |id: &ResourceId| match id {
            ResourceId::Kube {
                kind, api_version, ..
            } => self.resource(api_version, kind).is_some(),
            ResourceId::Systemd { .. } | ResourceId::EnvFile { .. } => false,
        };
        let missing: Vec<&ResourceId> = desired
            .iter()
            .filter(|id| {
                !out.objects.contains_key(*id) && !out.forbidden.contains_key(*id) && servable(id)
            })
            .collect();
        // Namespaces first: one that does not exist spares the GETs of everything in it.
        let mut gone_namespaces = BTreeSet::new();
        for id in missing.iter().filter(|id| id.kind() == Some("Namespace")) {
            match self.get_allowed(id).await? {
                Ok(Some(obj)) => {
                    out.objects.insert((*id).clone(), obj);
                }
                Ok(None) => {
                    if let ResourceId::Kube { name, .. } = id {
                        gone_namespaces.insert(name.clone());
                    }
                }
                Err(why) => {
                    out.forbidden.insert((*id).clone(), why);
                }
            }
        }
        let gets = missing.into_iter().filter(|id| {
            id.kind() != Some("Namespace")
                && !matches!(id, ResourceId::Kube { namespace: Some(ns), .. } if gone_namespaces.contains(ns))
        });
        let found: Vec<(ResourceId, Result<Option<Value>, String>)> =
            futures_util::stream::iter(gets)
                .map(|id| async move { Ok::<_, Error>((id.clone(), self.get_allowed(id).await?)) })
                .buffer_unordered(8)
                .try_collect()
                .await?;
        for (id, obj) in found {
            match obj {
                Ok(Some(obj)) => {
                    out.objects.insert(id, obj);
                }
                Ok(None) => {}
                Err(why) => {
                    out.forbidden.insert(id, why);
                }
            }
        }
        Ok(out)
    }

    /// GET one object: `Ok(None)` when it does not exist, `Err(message)` when this account may
    /// not read it (403).
    async fn get_allowed(&self, id: &ResourceId) -> Result<Result<Option<Value>, String>, Error> {
        let step = format!("get {id}");
        let (r, name) = self.request_for(id)?;
        let req = r
            .get(&name, &GetParams::default())
            .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(v) => Ok(Ok(Some(v))),
            Err(e) if is_not_found(&e) => Ok(Ok(None)),
            Err(e) if is_forbidden(&e) => Ok(Err(api_message(&e))),
            Err(e) => Err(failed(step, e)),
        }
    }

    /// The server's OpenAPI v3 documents of `group_versions` (as `api/v1`, `apis/apps/v1`),
    /// raw: the index, then each document.
    ///
    /// # Errors
    /// [`Error::Backend`] when the index or a document cannot be read, or the server does not
    /// describe a group-version.
    pub async fn openapi(&self, group_versions: &BTreeSet<String>) -> Result<Vec<Value>, Error> {
        let get = |path: String| {
            let step = format!("read the OpenAPI v3 document `{path}`");
            async move {
                let req = http::Request::get(path.as_str())
                    .header("Accept", "application/json")
                    .body(Vec::new())
                    .map_err(|e| backend(&step, e))?;
                self.send(&step, req).await.map_err(|e| failed(&step, e))
            }
        };
        let index = get("/openapi/v3".to_string()).await?;
        let docs = group_versions.iter().map(|gv| {
            let url = index
                .pointer(&format!(
                    "/paths/{}",
                    gv.replace('~', "~0").replace('/', "~1")
                ))
                .and_then(|p| p.get("serverRelativeURL"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let get = &get;
            async move {
                match url {
                    Some(url) => get(url).await,
                    None => Err(backend(
                        "read the OpenAPI v3 index",
                        format!("the server does not describe `{gv}`"),
                    )),
                }
            }
        });
        futures_util::future::try_join_all(docs).await
    }
}
