# Structural validation of the decision input, mirroring input.schema.json and
# the node's TS validation (src/input.ts): the agreement test checks the three
# agree on every invalid case of the policy test table.
#
# Unknown fields are invalid (as in the schema): a policy never silently
# ignores something a newer node sends. Adding an input field therefore means
# shipping a policy that accepts it before nodes send it.
package dmr.validate

default valid := false

valid if {
	is_object(input)
	only_keys(input, {"sender", "recipient", "message", "hop", "node"}, {"sender", "recipient", "message", "hop", "node"})
	principal(input.sender)
	principal(input.recipient)
	message(input.message)
	hop(input.hop)
	node(input.node)
}

# Every required key present, no key outside allowed.
only_keys(obj, required, allowed) if {
	is_object(obj)
	keys := {k | some k, _ in obj}
	count(required - keys) == 0
	count(keys - allowed) == 0
}

name(s) if {
	is_string(s)
	s != ""
}

integer(n) if {
	is_number(n)
	n >= 0
	floor(n) == n
}

principal(p) if {
	only_keys(p, {"id", "organisation", "roles", "labels"}, {"id", "organisation", "roles", "labels"})
	name(p.id)
	name(p.organisation)
	is_array(p.roles)
	every role in p.roles { name(role) }
	is_object(p.labels)
	every key, value in p.labels {
		name(key)
		is_string(value)
	}
}

message(m) if {
	only_keys(m, {"id", "type", "size"}, {"id", "type", "size", "expiresAt", "ttl"})
	name(m.id)
	name(m.type)
	integer(m.size)
	optional_timestamp(m)
	optional_ttl(m)
}

optional_timestamp(m) if not has_key(m, "expiresAt")

optional_timestamp(m) if {
	is_string(m.expiresAt)
	regex.match(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`, m.expiresAt)
}

optional_ttl(m) if not has_key(m, "ttl")

optional_ttl(m) if integer(m.ttl)

hop(h) if {
	only_keys(h, {"origin", "count"}, {"origin", "previous", "count"})
	name(h.origin)
	integer(h.count)
	optional_previous(h)
}

optional_previous(h) if not has_key(h, "previous")

optional_previous(h) if name(h.previous)

node(n) if {
	only_keys(n, {"id"}, {"id"})
	name(n.id)
}

# object.keys is not among the opa-wasm SDK's built-ins; a comprehension is.
has_key(obj, key) if {
	some k, _ in obj
	k == key
}
