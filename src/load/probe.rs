//! Questions asked of a server outside any measured run: which tools it has (`tools/list`, on
//! one session of its own, before a run), so that a mix calling a tool it lacks is refused
//! with that reason instead of running into a wall of tool errors and the default mix fits the
//! server; and whether it answers MCP at all (the readiness check of a server without a health
//! route).

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

/// The mix a run uses when none is chosen: the reference server's `echo` where the server has
/// it, otherwise what every MCP server answers.
pub const ANY_SERVER_MIX: &str = "ping=1,tools/list=1";

/// Fits the plan's mix to the server, before the run: a mix that was `chosen` (`--mix`, a
/// profile's `mix`) and calls a tool the server does not list is refused (a usage error: exit
/// 2); the default mix (`tools/call:echo`) becomes [`ANY_SERVER_MIX`] against a server without
/// `echo`, and the returned line says so. A target that cannot be asked is not judged here:
/// the run itself will say what is wrong with it.
pub async fn fit_mix(plan: &mut LoadPlan, chosen: bool) -> anyhow::Result<Option<String>> {
    if called(plan).is_empty() {
        return Ok(None);
    }
    match tools(plan).await {
        Some(listed) => fit_to(plan, chosen, &listed),
        None => Ok(None),
    }
}

/// [`fit_mix`] against the tools the server `listed`.
fn fit_to(plan: &mut LoadPlan, chosen: bool, listed: &BTreeSet<String>) -> anyhow::Result<Option<String>> {
    let wanted = called(plan);
    let missing: Vec<&String> = wanted.difference(listed).collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let names = |s: Vec<&String>| s.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    let has = if listed.is_empty() { "no tools".to_string() } else { names(listed.iter().collect()) };
    if !chosen {
        plan.mix = ANY_SERVER_MIX.parse().expect("the any-server mix parses");
        return Ok(Some(format!(
            "the server at {} has no `echo` tool (it lists {has}): the mix is {ANY_SERVER_MIX} (choose one with --mix, or a profile's `mix`)",
            plan.urls()[0]
        )));
    }
    Err(UsageError(format!(
        "the mix (--mix, or a profile's `mix`) calls {}, which the server at {} does not have; it lists {has}. Call one of those (tools/call:NAME), or ping and tools/list",
        names(missing),
        plan.urls()[0],
    ))
    .into())
}

/// As [`fit_mix`], for a run whose targets this machine may not reach (load from the nodes
/// of a swarm): the default mix becomes [`ANY_SERVER_MIX`] also when the server cannot be
/// asked from here (within 3 s), since nothing says it has `echo`.
pub async fn fit_mix_from_afar(plan: &mut LoadPlan, chosen: bool) -> anyhow::Result<Option<String>> {
    if chosen || called(plan).is_empty() {
        return fit_mix(plan, chosen).await;
    }
    match tokio::time::timeout(std::time::Duration::from_secs(3), tools(plan)).await {
        Ok(Some(listed)) => fit_to(plan, chosen, &listed),
        _ => {
            plan.mix = ANY_SERVER_MIX.parse().expect("the any-server mix parses");
            Ok(Some(format!(
                "the server at {} cannot be asked from this machine: the mix is {ANY_SERVER_MIX} (choose one with --mix)",
                plan.urls()[0]
            )))
        }
    }
}

/// The tools the first target lists, on a session of its own; `None` when it cannot be asked.
async fn tools(plan: &LoadPlan) -> Option<BTreeSet<String>> {
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
    asked.ok()?.ok()?
}

/// One MCP exchange through `target`: a session opened (`initialize`), a `ping` answered, the
/// session closed. The readiness check of a server without a health route.
pub async fn answers(
    target: &super::Target,
    wire: std::sync::Arc<super::stream::Wire>,
    timeout: std::time::Duration,
) -> Result<(), Failure> {
    let exchange = async {
        let mut s = Session::connect(target, None, wire).await?;
        s.initialize(1).await?;
        // `call` answers on every transport (legacy SSE on its stream) and classifies the answer
        // as a run would: a result, or a failure that says what came instead.
        let answered = s.call(br#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#.to_vec(), 2).await;
        s.close().await;
        answered
    };
    tokio::time::timeout(timeout, exchange).await.unwrap_or_else(|_| {
        Err(Failure::new(super::stats::ErrorClass::Timeout, format!("no answer within {timeout:?}")))
    })
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
