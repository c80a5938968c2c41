//! Compacts the JSON Schemas schemars generates for MCP tools, because every byte of
//! `tools/list` is paid for in an agent's context on every turn. Shared by every server's tool
//! registry. Definitions are inlined, optional values lose their
//! `null` alternative (absent means the same), and annotations an agent does not need (`$schema`,
//! `format`, titles, enum descriptions) go. Output schemas keep only their shape: property names
//! and types.

use serde_json::{Map, Value};

/// Which schema of a tool is being compacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Input,
    Output,
}

/// `schema` without what an agent does not need (see the module's description).
pub fn compact(schema: &Map<String, Value>, kind: Kind) -> Map<String, Value> {
    let mut root = schema.clone();
    let defs = match root.remove("$defs") {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    };
    let mut value = Value::Object(root);
    walk(&mut value, &defs, kind, true);
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn walk(value: &mut Value, defs: &Map<String, Value>, kind: Kind, is_root: bool) {
    let Value::Object(map) = value else {
        if let Value::Array(items) = value {
            for item in items {
                walk(item, defs, kind, false);
            }
        }
        return;
    };
    if let Some(Value::String(reference)) = map.get("$ref")
        && let Some(target) = reference
            .strip_prefix("#/$defs/")
            .and_then(|name| defs.get(name))
    {
        *value = target.clone();
        walk(value, defs, kind, is_root);
        return;
    }
    // `anyOf: [X, {type: null}]` is how schemars spells Option<X>: keep X.
    if let Some(Value::Array(alternatives)) = map.get("anyOf")
        && alternatives.len() == 2
        && let Some(inner) = alternatives
            .iter()
            .find(|a| a.get("type") != Some(&Value::from("null")))
    {
        let mut inner = inner.clone();
        if let (Value::Object(inner_map), Some(description)) = (&mut inner, map.get("description"))
        {
            inner_map.insert("description".into(), description.clone());
        }
        *value = inner;
        walk(value, defs, kind, is_root);
        return;
    }
    if let Some(Value::Array(types)) = map.get("type") {
        let concrete: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
        if let [single] = concrete.as_slice() {
            let single = (*single).clone();
            map.insert("type".into(), single);
        }
    }
    for key in [
        "$schema", "format", "title", "default", "minimum", "maximum",
    ] {
        map.remove(key);
    }
    if map.contains_key("enum") || kind == Kind::Output {
        map.remove("description");
    }
    if kind == Kind::Output {
        // An output's shape is what a client needs; its value sets are in the input schemas.
        map.remove("required");
        map.remove("enum");
    }
    if kind == Kind::Output && !is_root && map.contains_key("properties") {
        map.remove("type");
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "properties" => {
                if let Value::Object(properties) = child {
                    for property in properties.values_mut() {
                        walk(property, defs, kind, false);
                    }
                }
            }
            "items" | "additionalProperties" => walk(child, defs, kind, false),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inlines_definitions_and_drops_noise() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": {"Status": {"description": "Where a task stands.", "enum": ["a", "b"], "type": "string"}},
            "properties": {
                "status": {"anyOf": [{"$ref": "#/$defs/Status"}, {"type": "null"}], "description": "Filter."},
                "limit": {"type": ["integer", "null"], "format": "uint32", "minimum": 0},
                "tags": {"type": "array", "items": {"$ref": "#/$defs/Status"}}
            },
            "required": ["status"],
            "type": "object"
        });
        let Value::Object(schema) = schema else {
            unreachable!()
        };
        let input = Value::Object(compact(&schema, Kind::Input));
        assert_eq!(
            input,
            json!({
                "properties": {
                    "status": {"enum": ["a", "b"], "type": "string"},
                    "limit": {"type": "integer"},
                    "tags": {"type": "array", "items": {"enum": ["a", "b"], "type": "string"}}
                },
                "required": ["status"],
                "type": "object"
            })
        );
        let output = Value::Object(compact(&schema, Kind::Output));
        assert!(output.get("required").is_none());
    }
}
