//! The apply lock's Leases (`coordination.k8s.io/v1`), for [`crate::lock`]: raw requests on a
//! fixed path, so that they work before discovery knows the group and whatever the stack renders.

use super::*;

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn leases(namespace: &str) -> Request {
    Request::new(format!(
        "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    ))
}

impl Kube {
    /// Whether a namespace exists.
    ///
    /// # Errors
    /// [`Error::Backend`] for any failure but 404.
    pub async fn namespace_exists(&self, name: &str) -> Result<bool, Error> {
        let step = format!("get Namespace {name}");
        let req = Request::new("/api/v1/namespaces")
            .get(name, &GetParams::default())
            .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(failed(step, e)),
        }
    }

    /// GET a Lease; `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Backend`] for any failure but 404.
    pub async fn get_lease(&self, namespace: &str, name: &str) -> Result<Option<Value>, Error> {
        let step = format!("get Lease {namespace}/{name}");
        let req = leases(namespace)
            .get(name, &GetParams::default())
            .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed(step, e)),
        }
    }

    /// Create a Lease (POST), or `replace` it (PUT, guarded by the `metadata.resourceVersion` it
    /// carries). `None` when another writer got there first (409: it exists already, or moved
    /// since it was read).
    ///
    /// # Errors
    /// [`Error::Backend`] with the server's reason for any other failure.
    pub async fn write_lease(
        &self,
        namespace: &str,
        lease: &Value,
        replace: bool,
    ) -> Result<Option<Value>, Error> {
        let name = lease
            .at("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let step = format!(
            "{} Lease {namespace}/{name}",
            if replace { "update" } else { "create" }
        );
        let body = serde_json::to_vec(lease).map_err(|e| backend(&step, e))?;
        let pp = kube::api::PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let r = leases(namespace);
        let req = if replace {
            r.replace(name, &pp, body)
        } else {
            r.create(&pp, body)
        }
        .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(failed(step, e)),
        }
    }

    /// DELETE a Lease; absent already is fine.
    ///
    /// # Errors
    /// [`Error::Backend`] with the server's reason.
    pub async fn delete_lease(&self, namespace: &str, name: &str) -> Result<(), Error> {
        let step = format!("delete Lease {namespace}/{name}");
        let req = leases(namespace)
            .delete(name, &DeleteParams::default())
            .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(failed(step, e)),
        }
    }
}
