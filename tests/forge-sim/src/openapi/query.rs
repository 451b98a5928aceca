//! Query strings held to the description: every parameter sent must be one the operation
//! documents (`in: query`, directly or through `$ref: #/components/parameters/NAME`), and its
//! value must fit the parameter's schema (an `enum`, `integer` or `boolean`; other types are
//! taken as sent). GitHub ignores parameters it does not know, which is exactly how a client
//! asking for a filter GitHub does not have (or misspelling one) goes unnoticed: so they are
//! reported here.

use serde_json::Value;

use super::Spec;

impl Spec {
    /// See [`super::validate_query`].
    pub fn validate_query(
        &self,
        method: &str,
        route: &str,
        query: &str,
    ) -> Result<(), Vec<String>> {
        if query.is_empty() {
            return Ok(());
        }
        let (path, op) = self.operation(method, route)?;
        let documented: Vec<&Value> = op
            .get("parameters")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|p| self.resolve_parameter(p)).collect())
            .unwrap_or_default();
        let mut errs = Vec::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let param = documented.iter().find(|p| {
                p.get("in").and_then(Value::as_str) == Some("query")
                    && p.get("name").and_then(Value::as_str) == Some(name.as_ref())
            });
            let Some(param) = param else {
                errs.push(format!(
                    "{method} {path}: query parameter {name:?} is not documented"
                ));
                continue;
            };
            if let Some(why) = misfit(param.get("schema").unwrap_or(&Value::Null), &value) {
                errs.push(format!("{method} {path}: query {name}={value:?}: {why}"));
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// A parameter object, following `$ref: #/components/parameters/NAME`.
    fn resolve_parameter<'a>(&'a self, p: &'a Value) -> Option<&'a Value> {
        match p.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .parameters
                .get(r.strip_prefix("#/components/parameters/")?),
            None => Some(p),
        }
    }
}

/// Why `value` does not fit `schema`, if it does not.
fn misfit(schema: &Value, value: &str) -> Option<String> {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.iter().any(|a| a.as_str() == Some(value)) {
            let names: Vec<String> = allowed.iter().map(ToString::to_string).collect();
            return Some(format!("not one of {}", names.join(", ")));
        }
        return None;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") if value.parse::<i64>().is_err() => Some("not an integer".into()),
        Some("boolean") if !matches!(value, "true" | "false") => Some("not a boolean".into()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec() -> Spec {
        let doc = json!({
            "paths": {"/repos/{owner}/{repo}/collaborators": {"get": {
                "parameters": [
                    {"name": "affiliation", "in": "query",
                     "schema": {"type": "string", "enum": ["outside", "direct", "all"]}},
                    {"$ref": "#/components/parameters/per-page"}
                ],
                "responses": {"200": {"description": "OK"}}
            }}},
            "components": {"parameters": {"per-page": {
                "name": "per_page", "in": "query", "schema": {"type": "integer"}
            }}}
        });
        Spec::from_document(&doc).unwrap()
    }

    #[test]
    fn documented_parameters_with_valid_values_pass() {
        let s = spec();
        let r = "/repos/{owner}/{repo}/collaborators";
        assert_eq!(s.validate_query("GET", r, ""), Ok(()));
        assert_eq!(
            s.validate_query("GET", r, "affiliation=direct&per_page=100"),
            Ok(())
        );
        let errs = s
            .validate_query("GET", r, "affiliation=members&per_page=x&role=admin")
            .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("not one of"), "{errs:?}");
        assert!(errs[1].contains("not an integer"), "{errs:?}");
        assert!(errs[2].contains("\"role\" is not documented"), "{errs:?}");
    }
}
