//! Building images from a packed context, and finding them.

use futures_util::StreamExt;

use super::{is_not_found, Docker, EngineError};
use crate::image::{context, Contents};

/// True when the engine has an image with this tag.
pub async fn exists(docker: &Docker, tag: &str) -> Result<bool, EngineError> {
    match docker.inspect_image(tag).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(EngineError::api(format!("inspect image {tag}"), e)),
    }
}

/// Builds `contents` as `tags[0]` and adds the other tags; returns the image ID.
pub async fn build(
    docker: &Docker,
    contents: &Contents,
    tags: &[String],
    labels: &[(String, String)],
) -> Result<String, EngineError> {
    let action = format!("build image {}", tags.join(", "));
    let tar =
        context(contents, labels).map_err(|e| EngineError::Api { action: action.clone(), message: e.to_string() })?;
    let options = bollard::query_parameters::BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(tags[0].clone()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
    let mut id = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(detail) = info.error_detail {
                    return Err(EngineError::Api { action, message: detail.message.unwrap_or_default() });
                }
                if let Some(aux) = info.aux.and_then(|a| a.id) {
                    id = Some(aux);
                }
            }
            Err(e) => return Err(EngineError::api(action, e)),
        }
    }
    for tag in &tags[1..] {
        let (repo, t) = tag.rsplit_once(':').unwrap_or((tag.as_str(), "latest"));
        let opts = bollard::query_parameters::TagImageOptions { repo: Some(repo.into()), tag: Some(t.into()) };
        docker.tag_image(&tags[0], Some(opts)).await.map_err(|e| EngineError::api(format!("tag {tag}"), e))?;
    }
    match id {
        Some(id) => Ok(id),
        None => docker
            .inspect_image(&tags[0])
            .await
            .map(|i| i.id.unwrap_or_default())
            .map_err(|e| EngineError::api(format!("inspect image {}", tags[0]), e)),
    }
}
