//! Swarm membership: is this node a manager, swarm init.

use super::{Engine, EngineError};

/// Whether this engine is a swarm manager; `Err(NotManager)` says what to do if not.
pub async fn require_manager(engine: &dyn Engine) -> Result<(), EngineError> {
    let m = engine.membership().await?;
    if m.state != "active" {
        return Err(EngineError::NotManager(format!(
            "this Docker Engine is not part of a swarm (state: {}); run `swarmctl init` first",
            if m.state.is_empty() { "inactive" } else { &m.state }
        )));
    }
    if !m.manager {
        return Err(EngineError::NotManager(
            "this node is a swarm worker; run swarmctl against a manager (DOCKER_HOST=… of a manager node)".into(),
        ));
    }
    Ok(())
}

/// Initializes a swarm when the engine is in none. Returns `Some(node id)` when it did, `None`
/// when a swarm was already active. Without `advertise`, the engine picks the address; where
/// it cannot (several interfaces), 127.0.0.1 is used, which is right for a one-node swarm.
pub async fn init(engine: &dyn Engine, advertise: Option<&str>) -> Result<Option<String>, EngineError> {
    if engine.membership().await?.state == "active" {
        return Ok(None);
    }
    let result = match engine.init_swarm(advertise).await {
        Err(EngineError::Api { message, .. }) if advertise.is_none() && message.contains("advertise") => {
            tracing::warn!("the engine could not choose an address to advertise; using 127.0.0.1 (one-node swarm; give --advertise-addr for more nodes)");
            engine.init_swarm(Some("127.0.0.1")).await
        }
        other => other,
    };
    match result {
        Ok(id) => Ok(Some(id)),
        // Someone else (another swarmctl, `docker swarm init`) made it a swarm meanwhile.
        Err(e) if engine.membership().await.is_ok_and(|m| m.state == "active") => {
            tracing::info!("the engine joined a swarm while this one was being initialized ({e})");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::Fake;

    #[tokio::test]
    async fn init_makes_a_manager_once() {
        let fake = Fake::default();
        assert!(require_manager(&fake).await.unwrap_err().to_string().contains("run `swarmctl init` first"));
        assert_eq!(init(&fake, None).await.unwrap().as_deref(), Some("node0"));
        assert_eq!(init(&fake, None).await.unwrap(), None, "already a swarm: nothing done");
        assert_eq!(fake.calls(), ["swarm init -"]);
        require_manager(&fake).await.unwrap();
    }

    #[tokio::test]
    async fn a_swarm_made_by_someone_else_meanwhile_is_no_error() {
        let fake = Fake::default();
        fake.race_init();
        assert_eq!(init(&fake, None).await.unwrap(), None);
        require_manager(&fake).await.unwrap();
    }
}
