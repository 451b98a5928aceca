//! Labels and milestones: restored first, because the issues restored next name them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::source::Source;
use super::{Engine, decode};
use crate::forge::ForgeError;

/// Labels (created when missing, by name) and milestones (by title); with only
/// `parts.issues`, the target's are read so issues can name them.
pub(super) async fn labels_and_milestones(
    engine: &mut Engine<'_>,
    src: &Source,
) -> Result<(), ForgeError> {
    let existing = engine.client.get_all(&engine.repo_path("/labels")).await?;
    engine.labels = existing
        .iter()
        .filter_map(|l| l.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let milestones = engine
        .client
        .get_all(&engine.repo_path("/milestones?state=all"))
        .await?;
    let by_title: BTreeMap<String, u64> = milestones
        .iter()
        .filter_map(|m| {
            Some((
                m.get("title")?.as_str()?.to_string(),
                m.get("number")?.as_u64()?,
            ))
        })
        .collect();
    let restore = engine.opts.parts.labels;
    for label in &src.labels {
        let Some(name) = label.get("name").and_then(Value::as_str) else {
            continue;
        };
        if engine.labels.contains(name) {
            if restore {
                engine.reused("label", "labels");
            }
            continue;
        }
        if !restore {
            continue;
        }
        let mut body = serde_json::json!({ "name": name });
        for field in ["color", "description"] {
            if let Some(v) = label.get(field).filter(|v| !v.is_null()) {
                body[field] = v.clone();
            }
        }
        engine.post(&engine.repo_path("/labels"), &body).await?;
        engine.labels.insert(name.to_string());
        engine.created("label", "labels");
    }
    for m in &src.milestones {
        let (Some(title), Some(number)) = (
            m.get("title").and_then(Value::as_str),
            m.get("number").and_then(Value::as_u64),
        ) else {
            continue;
        };
        if let Some(&new) = by_title.get(title) {
            engine.milestones.insert(number, new);
            if restore {
                engine.reused("milestone", "milestones");
            }
            continue;
        }
        if !restore {
            continue;
        }
        let mut body = serde_json::json!({ "title": title });
        for field in ["state", "description", "due_on"] {
            if let Some(v) = m.get(field).filter(|v| !v.is_null()) {
                body[field] = v.clone();
            }
        }
        let created = engine.post(&engine.repo_path("/milestones"), &body).await?;
        let new = created
            .get("number")
            .and_then(Value::as_u64)
            .ok_or_else(|| decode("POST", &engine.repo_path("/milestones"), "no number"))?;
        engine.milestones.insert(number, new);
        engine.created("milestone", "milestones");
    }
    Ok(())
}
