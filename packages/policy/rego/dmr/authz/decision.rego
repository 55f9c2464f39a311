# DMR default policy pack: who may send what to whom.
#
# Entrypoint: data.dmr.authz.decision -> {"allow": bool, "reasons": [string]}.
# Deny by default: a message is allowed only when a route rule fires (same
# organisation, or an explicit grant in data.dmr.grants) and no limit rule
# denies it. Operators change grants and limits in data (data.json), not here.
#
# Reason codes are a stable contract (metrics, delivery reports and audit
# records carry them): see packages/policy/docs/policy-input.md.
#
# Keep to built-ins the opa-wasm JS SDK implements (tooling checks against its
# capabilities.json), since nodes evaluate the Wasm build of this entrypoint.
package dmr.authz

import data.dmr.validate

# Invalid input is decided here too, not only by the node's TS validation, so
# an OPA sidecar or `opa eval` given the same document decides the same way.
default decision := {"allow": false, "reasons": ["INPUT_INVALID"]}

decision := {"allow": allow, "reasons": reasons} if validate.valid

# Allow only when a route exists and nothing denies: absent either, deny.
default allow := false

allow if {
	count(route) > 0
	count(deny) == 0
}

# Deny reasons first (what an operator must fix), else why it was allowed.
reasons := sort([r | some r in deny]) if count(deny) > 0

reasons := sort([r | some r in route]) if count(deny) == 0

# --- routes -----------------------------------------------------------------

route contains "SAME_ORGANISATION" if input.sender.organisation == input.recipient.organisation

route contains "GRANT" if {
	some grant in grants_between
	type_covered(grant)
}

# Grants from the sender's organisation to the recipient's.
grants_between contains grant if {
	some grant in data.dmr.grants
	grant.from == input.sender.organisation
	grant.to == input.recipient.organisation
}

# A grant without "types" covers every type.
type_covered(grant) if not grant.types

type_covered(grant) if input.message.type in grant.types

# --- denies -----------------------------------------------------------------

deny contains "NO_GRANT" if {
	input.sender.organisation != input.recipient.organisation
	count(grants_between) == 0
}

deny contains "TYPE_NOT_GRANTED" if {
	input.sender.organisation != input.recipient.organisation
	count(grants_between) > 0
	not "GRANT" in route
}

# Network-wide type allow-list; absent means every type.
deny contains "TYPE_NOT_ALLOWED" if {
	allowed := data.dmr.limits.allowedTypes
	not input.message.type in allowed
}

deny contains "SIZE_LIMIT" if input.message.size > max_size

deny contains "HOP_LIMIT" if input.hop.count > data.dmr.limits.maxHops

# Per-type cap wins over the default cap; no cap configured means no limit.
max_size := data.dmr.limits.maxSizeByType[input.message.type]

max_size := data.dmr.limits.maxSize if not data.dmr.limits.maxSizeByType[input.message.type]
