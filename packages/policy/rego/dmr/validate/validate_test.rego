# Each structural rule of validate.rego: one valid document, then one breach at a time.
package dmr.validate_test

import data.dmr.validate

good := {
	"sender": {"id": "a-bot", "organisation": "ria", "roles": ["bot"], "labels": {"tier": "gold"}},
	"recipient": {"id": "b-bot", "organisation": "rik", "roles": [], "labels": {}},
	"message": {"id": "m-1", "type": "ChatMessage", "size": 0, "expiresAt": "2030-01-01T00:00:00.5+02:00", "ttl": 60},
	"hop": {"origin": "node-a", "previous": "node-b", "count": 1},
	"node": {"id": "node-c"},
}

# Only built-ins a node's Wasm engine runs (CentOps tests with those alone): object.union and json.remove, not json.patch.
at(path, value) := {a: value} if [a] := split(trim_prefix(path, "/"), "/")

at(path, value) := {a: {b: value}} if [a, b] := split(trim_prefix(path, "/"), "/")

at(path, value) := {a: {b: {c: value}}} if [a, b, c] := split(trim_prefix(path, "/"), "/")

valid_with(path, value) if validate.valid with input as object.union(good, at(path, value))

valid_without(path) if validate.valid with input as json.remove(good, [trim_prefix(path, "/")])

test_good_is_valid if validate.valid with input as good

test_not_an_object if not validate.valid with input as ["sender"]

test_missing_input if not validate.valid

test_unknown_top_level_field if not valid_with("/extra", 1)

test_missing_sections if {
	not valid_without("/sender")
	not valid_without("/recipient")
	not valid_without("/message")
	not valid_without("/hop")
	not valid_without("/node")
}

test_principal_rules if {
	not valid_with("/sender/id", "")
	not valid_with("/sender/organisation", 7)
	not valid_without("/recipient/roles")
	not valid_with("/sender/roles", ["bot", ""])
	not valid_with("/sender/roles", "bot")
	not valid_with("/sender/labels", [])
	not valid_with("/sender/labels/tier", 1)
	not valid_with("/sender/unknown", "x")
}

test_message_rules if {
	not valid_without("/message/id")
	not valid_with("/message/type", "")
	not valid_with("/message/size", -1)
	not valid_with("/message/size", 1.5)
	not valid_with("/message/size", "10")
	valid_without("/message/expiresAt")
	not valid_with("/message/expiresAt", "tomorrow")
	valid_without("/message/ttl")
	not valid_with("/message/ttl", -5)
	not valid_with("/message/priority", 1)
}

test_hop_rules if {
	valid_without("/hop/previous")
	not valid_with("/hop/previous", "")
	not valid_without("/hop/origin")
	not valid_with("/hop/count", -1)
	not valid_with("/hop/count", 0.5)
}

test_node_rules if {
	not valid_with("/node/id", "")
	not valid_with("/node/name", "x")
}
