//! GitHub's own API description (OpenAPI 3.0.3, from the npm package `@octokit/openapi` 23.0.2,
//! MIT; `github/` beside this crate) as a JSON Schema validator of the simulator's exchanges.
//!
//! OpenAPI 3.0's schema objects are not JSON Schema: `nullable: true` is their own keyword. The
//! description is therefore rewritten once ([`rewrite`]): `nullable` becomes a type union with
//! `"null"` (and `null` joins an `enum`), or `anyOf [schema, {type: null}]` where the schema is a
//! `$ref` or a composition; every `$ref` points into one registered resource that keeps
//! `components`, so references resolve as they do in the description. Schemas are validated as
//! draft 4 (as OpenAPI 3.0's are: siblings of `$ref` are ignored, `exclusiveMinimum` is a
//! boolean), with `date-time`, `date`, `email` and `uri` formats checked.
//!
//! Route templates are matched with their parameter names ignored (`/repos/{owner}/{repo}` is
//! `/repos/{}/{}`), and `{*rest}` wildcards count as one parameter. The simulator's upload routes
//! (`/uploads/repos/...`, served on `uploads.github.com` by GitHub) map to the description's path
//! without the `/uploads` prefix.
//!
//! Each (method, path, status) schema is compiled once and cached.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{Arc, OnceLock};

mod query;

use jsonschema::{Draft, Validator};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

/// GitHub's OpenAPI description, gzipped.
const SPEC_GZ: &[u8] = include_bytes!("../github/api.github.com.json.gz");

/// The URI the rewritten description is registered under; every `$ref` is made absolute to it.
const BASE: &str = "https://forge-sim.invalid/api.github.com.json";

/// The loaded, rewritten description and its compiled validators.
pub struct Spec {
    /// Normalised path (`/repos/{}/{}`) → the description's path item (rewritten).
    paths: HashMap<String, (String, Value)>,
    /// `components.responses` as in the description (for `$ref` indirection of responses).
    responses: Map<String, Value>,
    /// `components.parameters` as in the description (for `$ref`s of query parameters).
    parameters: Map<String, Value>,
    registry: jsonschema::Registry,
    cache: Mutex<HashMap<String, Arc<Compiled>>>,
}

enum Compiled {
    /// The description documents no JSON body here.
    NoBody,
    Schema(Validator),
}

static SPEC: OnceLock<Result<Spec, String>> = OnceLock::new();

/// The description, loaded on first use (about 10 MB of JSON).
pub fn spec() -> Result<&'static Spec, String> {
    SPEC.get_or_init(|| Spec::load(SPEC_GZ))
        .as_ref()
        .map_err(Clone::clone)
}

/// Checks a response of the simulator against the description: the route must be one of its
/// paths with this method; the status must be documented for that operation (a 304 to a GET
/// always is: GitHub answers conditional requests everywhere); a documented JSON body must be
/// present and valid against its schema. A status documented without a body must come without
/// one (an error status may carry GitHub's error body).
pub fn validate_response(
    method: &str,
    route: &str,
    status: u16,
    body: Option<&Value>,
) -> Result<(), Vec<String>> {
    spec()
        .map_err(|e| vec![e])?
        .validate_response(method, route, status, body)
}

/// Checks a JSON request body against the operation's `requestBody` schema. An operation
/// documented without a JSON body accepts no body (or an empty object).
pub fn validate_request(
    method: &str,
    route: &str,
    body: Option<&Value>,
) -> Result<(), Vec<String>> {
    spec()
        .map_err(|e| vec![e])?
        .validate_request(method, route, body)
}

/// Checks a request's query string (without `?`) against the operation's query parameters:
/// each must be documented, and its value valid for its schema (see [`query`]).
pub fn validate_query(method: &str, route: &str, query: &str) -> Result<(), Vec<String>> {
    spec()
        .map_err(|e| vec![e])?
        .validate_query(method, route, query)
}

/// `/repos/{owner}/{repo}` → `/repos/{}/{}`; the simulator's `/uploads/...` → `/...`.
pub fn normalise(route: &str) -> String {
    let route = route
        .strip_prefix("/uploads/")
        .map_or(route.to_string(), |r| format!("/{r}"));
    let mut out = String::with_capacity(route.len());
    let mut in_param = false;
    for c in route.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

impl Spec {
    fn load(gz: &[u8]) -> Result<Spec, String> {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut text)
            .map_err(|e| format!("decompressing GitHub's OpenAPI description: {e}"))?;
        let doc: Value = serde_json::from_slice(&text)
            .map_err(|e| format!("parsing GitHub's OpenAPI description: {e}"))?;
        Spec::from_document(&doc)
    }

    /// Builds the validator set from an OpenAPI 3.0 document (public for tests with small
    /// documents).
    pub fn from_document(doc: &Value) -> Result<Spec, String> {
        let schemas = doc
            .pointer("/components/schemas")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let resource = json!({"components": {"schemas": rewrite(&schemas)}});
        let registry = jsonschema::Registry::try_new(BASE, Draft::Draft4.create_resource(resource))
            .map_err(|e| format!("registering the description's schemas: {e}"))?;
        let mut paths = HashMap::new();
        if let Some(p) = doc.get("paths").and_then(Value::as_object) {
            for (path, item) in p {
                paths.insert(normalise(path), (path.clone(), item.clone()));
            }
        }
        let responses = doc
            .pointer("/components/responses")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let parameters = doc
            .pointer("/components/parameters")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Ok(Spec {
            paths,
            responses,
            parameters,
            registry,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The description's path for a route template, if it has one.
    pub fn path_of(&self, route: &str) -> Option<&str> {
        self.paths.get(&normalise(route)).map(|(p, _)| p.as_str())
    }

    fn operation(&self, method: &str, route: &str) -> Result<(&str, &Value), Vec<String>> {
        let (path, item) = self.paths.get(&normalise(route)).ok_or_else(|| {
            vec![format!(
                "{method} {route}: GitHub's description has no such path"
            )]
        })?;
        let m = method.to_ascii_lowercase();
        let m = if m == "head" { "get".to_string() } else { m };
        let op = item.get(&m).ok_or_else(|| {
            let mut have: Vec<&str> = item
                .as_object()
                .map(|o| {
                    o.keys()
                        .filter(|k| {
                            matches!(k.as_str(), "get" | "put" | "post" | "delete" | "patch")
                        })
                        .map(String::as_str)
                        .collect()
                })
                .unwrap_or_default();
            have.sort_unstable();
            vec![format!(
                "{method} {path}: GitHub's description has no such operation (it has {})",
                have.join(", ")
            )]
        })?;
        Ok((path.as_str(), op))
    }

    pub fn validate_response(
        &self,
        method: &str,
        route: &str,
        status: u16,
        body: Option<&Value>,
    ) -> Result<(), Vec<String>> {
        let (path, op) = self.operation(method, route)?;
        let key = format!("{method} {path} {status}");
        let compiled = match self.cached(&key) {
            Some(c) => c,
            None => {
                let responses = op.get("responses").and_then(Value::as_object);
                let documented = responses.and_then(|r| r.get(&status.to_string()));
                let compiled = match documented {
                    None if status == 304 && method.eq_ignore_ascii_case("GET") => Compiled::NoBody,
                    None => {
                        let mut listed: Vec<&str> = responses
                            .map(|r| r.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        listed.sort_unstable();
                        return Err(vec![format!(
                            "{method} {path}: status {status} is not documented (documented: {})",
                            listed.join(", ")
                        )]);
                    }
                    Some(resp) => {
                        let resp = self.resolve_response(resp);
                        match json_schema(resp.get("content")) {
                            Some(schema) => self.compile(&key, &schema)?,
                            None => Compiled::NoBody,
                        }
                    }
                };
                self.store(key.clone(), compiled)
            }
        };
        // An error status documented without a body may still carry GitHub's error body
        // (`{"message": ..., "documentation_url": ...}`), as GitHub's answers do.
        if status >= 400
            && matches!(*compiled, Compiled::NoBody)
            && body.is_some_and(|b| b.get("message").is_some_and(Value::is_string))
        {
            return Ok(());
        }
        check(&key, &compiled, body, "response")
    }

    pub fn validate_request(
        &self,
        method: &str,
        route: &str,
        body: Option<&Value>,
    ) -> Result<(), Vec<String>> {
        let (path, op) = self.operation(method, route)?;
        let key = format!("{method} {path} request");
        let compiled = match self.cached(&key) {
            Some(c) => c,
            None => {
                let schema = json_schema(op.pointer("/requestBody/content"));
                let compiled = match schema {
                    Some(s) => self.compile(&key, &s)?,
                    None => Compiled::NoBody,
                };
                self.store(key.clone(), compiled)
            }
        };
        // A body the description does not document is only acceptable when it says nothing.
        let body = body.filter(|b| !(b.is_null() || b.as_object().is_some_and(Map::is_empty)));
        match (&*compiled, body) {
            (Compiled::NoBody, None) => Ok(()),
            (Compiled::NoBody, Some(_)) => Err(vec![format!(
                "{key}: a JSON body was sent where GitHub's description documents none"
            )]),
            // An empty request body where one is documented: GitHub reads it as `{}`.
            (Compiled::Schema(_), None) => check(&key, &compiled, Some(&json!({})), "request"),
            (Compiled::Schema(_), Some(_)) => check(&key, &compiled, body, "request"),
        }
    }

    fn cached(&self, key: &str) -> Option<Arc<Compiled>> {
        self.cache.lock().get(key).cloned()
    }

    fn store(&self, key: String, c: Compiled) -> Arc<Compiled> {
        let c = Arc::new(c);
        self.cache.lock().insert(key, c.clone());
        c
    }

    /// Follows `$ref: #/components/responses/NAME`.
    fn resolve_response<'a>(&'a self, mut resp: &'a Value) -> &'a Value {
        for _ in 0..8 {
            let Some(r) = resp.get("$ref").and_then(Value::as_str) else {
                break;
            };
            match r
                .strip_prefix("#/components/responses/")
                .and_then(|n| self.responses.get(n))
            {
                Some(next) => resp = next,
                None => break,
            }
        }
        resp
    }

    fn compile(&self, key: &str, schema: &Value) -> Result<Compiled, Vec<String>> {
        let schema = rewrite(schema);
        jsonschema::options()
            .with_draft(Draft::Draft4)
            .with_registry(self.registry.clone())
            .should_validate_formats(true)
            .with_format("uri", |s: &str| url::Url::parse(s).is_ok())
            .with_format("uri-template", |_: &str| true)
            .build(&schema)
            .map(Compiled::Schema)
            .map_err(|e| vec![format!("{key}: compiling the schema: {e}")])
    }
}

/// The JSON schema of a `content` map: `application/json`, or another JSON media type.
fn json_schema(content: Option<&Value>) -> Option<Value> {
    let content = content?.as_object()?;
    let media = content.get("application/json").or_else(|| {
        content
            .iter()
            .find(|(k, _)| k.ends_with("+json") || k.ends_with("/json"))
            .map(|(_, v)| v)
    })?;
    media.get("schema").cloned()
}

fn check(
    key: &str,
    compiled: &Compiled,
    body: Option<&Value>,
    what: &str,
) -> Result<(), Vec<String>> {
    match (compiled, body) {
        (Compiled::NoBody, None) => Ok(()),
        (Compiled::NoBody, Some(_)) => Err(vec![format!(
            "{key}: a JSON {what} body where GitHub's description documents none"
        )]),
        (Compiled::Schema(_), None) => Err(vec![format!(
            "{key}: no JSON {what} body where GitHub's description documents one"
        )]),
        (Compiled::Schema(v), Some(body)) => {
            let errors: Vec<String> = v
                .iter_errors(body)
                .take(20)
                .map(|e| {
                    format!(
                        "{key}: {what} at {}: {} (schema {})",
                        at(&e),
                        describe(&e, 0),
                        e.schema_path
                    )
                })
                .collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors)
            }
        }
    }
}

fn at(e: &jsonschema::ValidationError<'_>) -> String {
    let at = e.instance_path.to_string();
    if at.is_empty() { "/".to_string() } else { at }
}

/// An error's message, without the instance dump of `anyOf`/`oneOf` failures: those list why
/// each alternative failed instead (two levels deep).
fn describe(e: &jsonschema::ValidationError<'_>, depth: usize) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    match &e.kind {
        K::AnyOf { context } | K::OneOfNotValid { context } if depth < 2 => {
            let alternatives: Vec<String> = context
                .iter()
                .enumerate()
                .map(|(i, errs)| {
                    let why: Vec<String> = errs
                        .iter()
                        .take(6)
                        .map(|x| format!("at {}: {}", at(x), describe(x, depth + 1)))
                        .collect();
                    format!("({}) {}", i + 1, why.join("; "))
                })
                .collect();
            format!(
                "matches none of its alternatives: {}",
                alternatives.join(" ")
            )
        }
        _ => {
            let mut msg = e.to_string();
            if msg.len() > 200 {
                let mut end = 200;
                while !msg.is_char_boundary(end) {
                    end -= 1;
                }
                msg.truncate(end);
                msg.push('…');
            }
            msg
        }
    }
}

/// Rewrites an OpenAPI 3.0 schema into JSON Schema (draft 4): `nullable: true` becomes a type
/// union with `"null"` (and `null` joins an `enum`), or `anyOf: [schema, {type: null}]` for a
/// `$ref` or a composition; `$ref`s into `#/components/` become absolute (see the module
/// documentation). Values of `example`, `examples`, `default` and `enum` are data, not schemas,
/// and are left alone.
pub fn rewrite(schema: &Value) -> Value {
    match schema {
        Value::Object(o) => {
            let mut out = Map::with_capacity(o.len());
            for (k, v) in o {
                match k.as_str() {
                    "example" | "examples" | "default" | "enum" | "x-github-breaking-changes" => {
                        out.insert(k.clone(), v.clone());
                    }
                    "$ref" => {
                        let r = match v.as_str() {
                            Some(r) if r.starts_with("#/components/") => {
                                Value::String(format!("{BASE}{r}"))
                            }
                            _ => v.clone(),
                        };
                        out.insert(k.clone(), r);
                    }
                    "properties" | "patternProperties" | "definitions" => {
                        // A map of name → schema: the names are data.
                        let mapped = match v.as_object() {
                            Some(m) => Value::Object(
                                m.iter().map(|(n, s)| (n.clone(), rewrite(s))).collect(),
                            ),
                            None => v.clone(),
                        };
                        out.insert(k.clone(), mapped);
                    }
                    "nullable" => {}
                    _ => {
                        out.insert(k.clone(), rewrite(v));
                    }
                }
            }
            if o.get("nullable").and_then(Value::as_bool) == Some(true) {
                nullable(out)
            } else {
                Value::Object(out)
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(rewrite).collect()),
        other => other.clone(),
    }
}

/// Makes a (rewritten) schema also accept `null`.
fn nullable(mut s: Map<String, Value>) -> Value {
    let composed = ["$ref", "allOf", "anyOf", "oneOf"]
        .iter()
        .any(|k| s.contains_key(*k));
    if composed {
        return json!({"anyOf": [Value::Object(s), {"type": "null"}]});
    }
    match s.get("type").cloned() {
        Some(Value::String(t)) => {
            s.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(mut ts)) => {
            if !ts.iter().any(|t| t == "null") {
                ts.push(json!("null"));
            }
            s.insert("type".into(), Value::Array(ts));
        }
        // No type: anything goes already.
        _ => {}
    }
    if let Some(Value::Array(e)) = s.get_mut("enum")
        && !e.iter().any(Value::is_null)
    {
        e.push(Value::Null);
    }
    Value::Object(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tiny() -> Spec {
        let doc = json!({
            "openapi": "3.0.3",
            "paths": {
                "/repos/{owner}/{repo}/things/{thing_id}": {
                    "get": {"responses": {
                        "200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/thing"}}}},
                        "404": {"$ref": "#/components/responses/not_found"},
                    }},
                    "delete": {"responses": {"204": {"description": "gone"}}},
                    "patch": {
                        "requestBody": {"content": {"application/json": {"schema": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, "state": {"type": "string", "enum": ["open", "closed"], "nullable": true}},
                            "required": ["name"],
                        }}}},
                        "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/thing"}}}}},
                    },
                },
            },
            "components": {
                "schemas": {
                    "thing": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "integer"},
                            "name": {"type": "string", "nullable": true},
                            "owner": {"nullable": true, "allOf": [{"$ref": "#/components/schemas/user"}]},
                            "parent": {"$ref": "#/components/schemas/user"},
                            "created_at": {"type": "string", "format": "date-time"},
                            "url": {"type": "string", "format": "uri"},
                        },
                        "required": ["id", "name", "owner", "created_at"],
                    },
                    "user": {"type": "object", "properties": {"login": {"type": "string"}}, "required": ["login"]},
                    "basic-error": {"type": "object", "properties": {"message": {"type": "string"}}},
                },
                "responses": {
                    "not_found": {"description": "nf", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/basic-error"}}}},
                },
            },
        });
        Spec::from_document(&doc).unwrap()
    }

    const ROUTE: &str = "/repos/{owner}/{repo}/things/{id}";

    #[test]
    fn nullable_fields_accept_null_and_missing_required_fields_fail() {
        let s = tiny();
        let ok =
            json!({"id": 1, "name": null, "owner": null, "created_at": "2024-01-01T00:00:00Z"});
        s.validate_response("GET", ROUTE, 200, Some(&ok)).unwrap();
        let ok = json!({"id": 1, "name": "x", "owner": {"login": "a"}, "created_at": "2024-01-01T00:00:00Z", "url": "https://h/x"});
        s.validate_response("GET", ROUTE, 200, Some(&ok)).unwrap();

        let missing = json!({"id": 1, "name": "x", "created_at": "2024-01-01T00:00:00Z"});
        let e = s
            .validate_response("GET", ROUTE, 200, Some(&missing))
            .unwrap_err();
        assert!(e.iter().any(|m| m.contains("owner")), "{e:?}");
        // A field that is not nullable does not accept null, through a $ref too.
        let bad = json!({"id": null, "name": "x", "owner": null, "parent": null, "created_at": "2024-01-01T00:00:00Z"});
        let e = s
            .validate_response("GET", ROUTE, 200, Some(&bad))
            .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        // The nullable $ref still checks the referenced schema.
        let bad = json!({"id": 1, "name": "x", "owner": {}, "created_at": "2024-01-01T00:00:00Z"});
        assert!(s.validate_response("GET", ROUTE, 200, Some(&bad)).is_err());
        // Formats are checked.
        let bad = json!({"id": 1, "name": "x", "owner": null, "created_at": "yesterday"});
        assert!(s.validate_response("GET", ROUTE, 200, Some(&bad)).is_err());
    }

    #[test]
    fn statuses_routes_and_bodies_are_held_to_the_description() {
        let s = tiny();
        // Through #/components/responses/.
        s.validate_response("GET", ROUTE, 404, Some(&json!({"message": "Not Found"})))
            .unwrap();
        assert!(
            s.validate_response("GET", ROUTE, 404, Some(&json!({"message": 1})))
                .is_err()
        );
        // Undocumented status, method and path.
        let e = s.validate_response("GET", ROUTE, 403, None).unwrap_err();
        assert!(e[0].contains("not documented"), "{e:?}");
        assert!(s.validate_response("PUT", ROUTE, 200, None).is_err());
        assert!(
            s.validate_response("GET", "/repos/{o}/{r}/other", 200, None)
                .is_err()
        );
        // A documented bodiless status; a 304 to a GET.
        s.validate_response("DELETE", ROUTE, 204, None).unwrap();
        assert!(
            s.validate_response("DELETE", ROUTE, 204, Some(&json!({"x": 1})))
                .is_err()
        );
        s.validate_response("GET", ROUTE, 304, None).unwrap();
        // A documented body that is missing.
        assert!(s.validate_response("GET", ROUTE, 200, None).is_err());
        // Request bodies, with a nullable enum.
        s.validate_request("PATCH", ROUTE, Some(&json!({"name": "a", "state": null})))
            .unwrap();
        s.validate_request("PATCH", ROUTE, Some(&json!({"name": "a", "state": "open"})))
            .unwrap();
        assert!(
            s.validate_request("PATCH", ROUTE, Some(&json!({"name": "a", "state": "x"})))
                .is_err()
        );
        assert!(
            s.validate_request("PATCH", ROUTE, Some(&json!({"state": "open"})))
                .is_err()
        );
        s.validate_request("GET", ROUTE, None).unwrap();
        assert!(
            s.validate_request("GET", ROUTE, Some(&json!({"a": 1})))
                .is_err()
        );
    }

    #[test]
    fn route_templates_match_the_descriptions_paths() {
        assert_eq!(
            normalise("/repos/{owner}/{repo}/git/ref/{*ref}"),
            "/repos/{}/{}/git/ref/{}"
        );
        assert_eq!(
            normalise("/uploads/repos/{owner}/{repo}/releases/{release_id}/assets"),
            "/repos/{}/{}/releases/{}/assets"
        );
        let s = spec().unwrap();
        assert_eq!(
            s.path_of("/uploads/repos/{owner}/{repo}/releases/{id}/assets"),
            Some("/repos/{owner}/{repo}/releases/{release_id}/assets")
        );
        assert_eq!(s.path_of("/repos/{owner}/{repo}/nonsense"), None);
    }

    #[test]
    fn githubs_description_loads_and_checks_a_real_shape() {
        let err =
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"});
        validate_response("GET", "/repos/{owner}/{repo}", 404, Some(&err)).unwrap();
        // A label as GitHub documents it: `description` is nullable, `color` is required.
        let label = json!({"id": 1, "node_id": "x", "url": "https://h/l", "name": "bug", "description": null, "color": "f00000", "default": false});
        validate_response(
            "GET",
            "/repos/{owner}/{repo}/labels/{name}",
            200,
            Some(&label),
        )
        .unwrap();
        let mut no_color = label.clone();
        no_color.as_object_mut().unwrap().remove("color");
        assert!(
            validate_response(
                "GET",
                "/repos/{owner}/{repo}/labels/{name}",
                200,
                Some(&no_color)
            )
            .is_err()
        );
    }
}
