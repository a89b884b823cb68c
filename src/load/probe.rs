//! Before a run, the target is asked once which tools it has (`tools/list`, on one session of
//! its own), so that a mix calling a tool it does not have is refused with that reason
//! instead of running into a wall of tool errors.

use std::collections::BTreeSet;

use super::client::Session;
use super::plan::LoadPlan;
use super::stats::Failure;
use crate::exit::UsageError;

/// The tools the mix calls (`tools/call:NAME`).
fn called(plan: &LoadPlan) -> BTreeSet<String> {
    plan.mix
        .calls
        .iter()
        .filter(|c| c.method == "tools/call")
        .filter_map(|c| c.label.strip_prefix("tools/call:"))
        .map(str::to_string)
        .collect()
}

/// The names in one `tools/list` answer, and its `nextCursor`.
fn page(answer: &str) -> Option<(Vec<String>, Option<String>)> {
    let v: serde_json::Value = serde_json::from_str(answer).ok()?;
    let result = v.get("result")?;
    let names = result.get("tools")?.as_array()?.iter().filter_map(|t| t.get("name")?.as_str().map(str::to_string));
    Some((names.collect(), result.get("nextCursor").and_then(|c| c.as_str()).map(str::to_string)))
}

/// Every tool the server lists (following `nextCursor`); `None` when the session cannot be
/// asked, the answer is not a tool list, or it runs past 20 pages (not judged then: a tool
/// may be on the next one).
async fn listed(session: &mut Session) -> Result<Option<BTreeSet<String>>, Failure> {
    let mut all = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for id in 2..22 {
        let params = match &cursor {
            Some(c) => format!(r#"{{"cursor":{}}}"#, serde_json::Value::from(c.as_str())),
            None => "{}".into(),
        };
        let request = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{params}}}"#);
        let Some(answer) = session.ask(request.into_bytes(), id).await? else { return Ok(None) };
        let Some((names, next)) = page(&answer) else { return Ok(None) };
        all.extend(names);
        match next {
            Some(c) if !c.is_empty() => cursor = Some(c),
            _ => return Ok(Some(all)),
        }
    }
    Ok(None)
}

/// Refuses (a usage error: exit 2) a mix that calls a tool the target does not list. A target
/// that cannot be asked is not judged here: the run itself will say what is wrong with it.
pub async fn check_tools(plan: &LoadPlan) -> anyhow::Result<()> {
    let wanted = called(plan);
    if wanted.is_empty() {
        return Ok(());
    }
    let target = &plan.targets[0];
    let asked = tokio::time::timeout(plan.timeout, async {
        let wire = std::sync::Arc::new(plan.wire().map_err(|e| Failure::new(super::stats::ErrorClass::Connect, e.0))?);
        let mut s = Session::connect(target, plan.sources.first().copied(), wire).await?;
        s.initialize(1).await?;
        let tools = listed(&mut s).await;
        if plan.close {
            s.close().await;
        }
        tools
    })
    .await;
    let Ok(Ok(Some(listed))) = asked else { return Ok(()) };
    let missing: Vec<&String> = wanted.difference(&listed).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names = |s: Vec<&String>| s.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    Err(UsageError(format!(
        "the mix (--mix, or a profile's `mix`) calls {}, which the server at {} does not have; it lists {}. Call one of those (tools/call:NAME), or ping and tools/list",
        names(missing),
        plan.urls()[0],
        if listed.is_empty() { "no tools".to_string() } else { names(listed.iter().collect()) }
    ))
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_list_page_is_read_with_its_cursor() {
        let (names, next) =
            page(r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"a"},{"name":"b"}],"nextCursor":"p2"}}"#)
                .unwrap();
        assert_eq!((names, next.as_deref()), (vec!["a".to_string(), "b".to_string()], Some("p2")));
        assert_eq!(page(r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[]}}"#).unwrap(), (vec![], None));
        assert!(page(r#"{"jsonrpc":"2.0","id":2,"result":{}}"#).is_none(), "not a tool list");
    }
}
