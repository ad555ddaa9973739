//! One object at a time: GET, server-side apply (and its dry run), DELETE, and the wait for a
//! deletion to finish.

use super::*;

impl Kube {
    /// GET one object; `None` when it does not exist.
    ///
    /// # Errors
    /// [`Error::Backend`] for any failure but 404.
    pub async fn get(&self, id: &ResourceId) -> Result<Option<Value>, Error> {
        let step = format!("get {id}");
        let (r, name) = self.request_for(id)?;
        let req = r
            .get(&name, &GetParams::default())
            .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed(step, e)),
        }
    }

    /// Server-side apply `obj` as field manager `labctl`: `force` takes ownership of conflicting
    /// fields, `dry_run` asks the server what the result would be without storing it.
    ///
    /// # Errors
    /// [`Error::Backend`] with the server's reason; for a conflict, each field and its manager.
    pub async fn apply(
        &self,
        id: &ResourceId,
        obj: &Value,
        force: bool,
        dry_run: bool,
    ) -> Result<Value, Error> {
        let step = format!("{} {id}", if dry_run { "dry-run apply" } else { "apply" });
        let (r, name) = self.request_for(id)?;
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        pp.force = force;
        pp.dry_run = dry_run;
        let req = r
            .patch(&name, &pp, &Patch::Apply(obj))
            .map_err(|e| backend(&step, e))?;
        self.send(&step, req).await.map_err(|e| failed(step, e))
    }

    /// DELETE one object (background propagation, as kubectl); absent already is fine.
    ///
    /// # Errors
    /// [`Error::Backend`] with the server's reason.
    pub async fn delete(&self, id: &ResourceId) -> Result<(), Error> {
        let step = format!("delete {id}");
        let (r, name) = self.request_for(id)?;
        let req = r
            .delete(&name, &DeleteParams::background())
            .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(failed(step, e)),
        }
    }

    /// Poll until an object is gone (a delete with finalizers takes time), at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Backend`] when it is still there after `timeout`.
    pub async fn wait_gone(&self, id: &ResourceId, timeout: Duration) -> Result<(), Error> {
        let until = Instant::now() + timeout;
        loop {
            if self.get(id).await?.is_none() {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(backend(
                    format!("replace {id}"),
                    format!("still being deleted after {} s", timeout.as_secs()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl DryRun for Kube {
    fn dry_run<'a>(
        &'a self,
        id: &'a ResourceId,
        obj: &'a Value,
        force: bool,
    ) -> futures_util::future::BoxFuture<'a, Result<Value, DryRunError>> {
        Box::pin(async move {
            let step = format!("dry-run apply {id}");
            let (r, name) = self
                .request_for(id)
                .map_err(|e| DryRunError::Unchecked(e.report()))?;
            let mut pp = PatchParams::apply(FIELD_MANAGER);
            pp.force = force;
            pp.dry_run = true;
            let req = r
                .patch(&name, &pp, &Patch::Apply(obj))
                .map_err(|e| DryRunError::Unchecked(backend(&step, e).report()))?;
            match self.send(&step, req).await {
                Ok(v) => Ok(v),
                Err(e) => match api_status(&e) {
                    Some(status) => Err(DryRunError::Refused(status)),
                    None => Err(DryRunError::Unchecked(backend(&step, e).report())),
                },
            }
        })
    }
}
