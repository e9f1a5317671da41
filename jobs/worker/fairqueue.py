"""Fair dispatch inside a Redis queue: the keys and the scripts that read and write them.

Dramatiq's Redis broker keeps one FIFO list per queue. Here a queue's waiting
messages are split by *owner* (``jobs.dispatch.fairness``: ``u<user id>``,
or ``sys`` for work nobody asked for) and by priority, and a fetch serves
the owners in turn, in proportion to their weights. Per queue ``<ns>:<queue>``::

    <ns>:<queue>               list   inbox: messages Dramatiq's own scripts put back
                                      (a dead worker's, a shutdown's give-back); the
                                      next fetch files them into their owner's bucket
    <ns>:<queue>.msgs          hash   message id -> message (Dramatiq's)
    <ns>:<queue>.fq.h|n        zset   owner -> virtual start tag, owners with messages
                                      waiting at that priority (h before n)
    <ns>:<queue>.b.h|n.<owner> list   that owner's waiting message ids, oldest first
    <ns>:<queue>.vt.h|n        string the virtual time: the tag last served
    <ns>:<queue>.fin.h|n       hash   owner -> tag it left the ring with (a returning
                                      owner does not jump the turn it used up)
    <ns>:<queue>.w             hash   owner -> weight (from the owner's latest message)
    <ns>:<queue>.cost          hash   message id -> its cost: the job's estimated seconds
    <ns>:<queue>.count         string waiting messages in the buckets
    <ns>:<queue>.run           hash   owner -> messages fetched and not yet settled
    <ns>:<queue>.ro            hash   message id -> owner, for each of those

The order is start-time fair queueing on estimated work: each owner in the
ring carries the virtual start tag of its next message; a fetch serves the
owner with the smallest tag (high ring first), and moves it on by the
message's cost (its job's estimated seconds) divided by the owner's weight.
Owners thus share a queue's *time*, not its job count: a customer whose jobs
take a tenth as long gets ten of them started for each of another's, so one
customer's long OCR page ranges do not hold the slots that others' one-page
documents wait for (children are never preempted: a job already running
keeps its slot). An owner
that starts waiting enters ``FAIR_SHARE_IDLE_CREDIT_S`` before the ring's
virtual time, but never before the tag it left with: a customer who arrives
while another's backlog keeps the queue busy is served first for that much
of its own estimated work (the head start a scheduler gives a task that
wakes up), and then in turn; it never waits behind the others' backlog, and
leaving and coming back gains no more than the credit. Enqueue is
``O(log owners)``; a fetch is ``O(log owners)`` plus, with a per-owner cap,
the owners it skips because they are at their cap.

A per-owner cap (``QueuePolicy.max_per_owner``) is work-conserving: a fetch
skips an owner at its cap only for another owner waiting at the same
priority; when every waiting owner is at its cap, the first is served anyway.
Running counts (``.run``) are given back when a message is acknowledged,
nacked, or put back (a dead worker's requeue, a shutdown's give-back: both
arrive through the inbox, where ``.ro`` tells a put-back message from a new one).

Delay queues (``<queue>.DQ``) stay plain lists: a worker fetches every
delayed message and holds it until its eta, so there is nothing to share.
"""

from __future__ import annotations

HIGH_LEVEL = "h"
NORMAL_LEVEL = "n"
PLAIN_LEVEL = "plain"
#: Inbox messages filed into buckets per fetch (a dead worker's requeue can put back many).
INBOX_BATCH = 1000

_LIBRARY = """
local IDLE_CREDIT_S = __IDLE_CREDIT_S__

local function release(base, message_id)
    local owner = redis.call("hget", base .. ".ro", message_id)
    if not owner then
        return false
    end
    redis.call("hdel", base .. ".ro", message_id)
    if redis.call("hincrby", base .. ".run", owner, -1) <= 0 then
        redis.call("hdel", base .. ".run", owner)
    end
    return true
end

local function fair_insert(base, owner, weight, level, message_id, front, cost)
    local ring = base .. ".fq." .. level
    local bucket = base .. ".b." .. level .. "." .. owner
    if weight and weight ~= "" then
        redis.call("hset", base .. ".w", owner, weight)
    end
    if cost and cost ~= "" then
        redis.call("hset", base .. ".cost", message_id, cost)
    end
    if front then
        redis.call("lpush", bucket, message_id)
    else
        redis.call("rpush", bucket, message_id)
    end
    if not redis.call("zscore", ring, owner) then
        local vt = tonumber(redis.call("get", base .. ".vt." .. level) or "0") or 0
        local fin = tonumber(redis.call("hget", base .. ".fin." .. level, owner) or "0") or 0
        redis.call("zadd", ring, math.max(vt - IDLE_CREDIT_S, fin), owner)
    end
    redis.call("incr", base .. ".count")
end

local function drain_inbox(base, limit)
    for _ = 1, limit do
        local message_id = redis.call("lpop", base)
        if not message_id then
            return
        end
        local data = redis.call("hget", base .. ".msgs", message_id)
        if data then
            local owner, weight, level, cost = "sys", nil, "n", nil
            local ok, decoded = pcall(cjson.decode, data)
            if ok and type(decoded) == "table" and type(decoded["options"]) == "table" then
                local options = decoded["options"]
                if type(options["conveyor_owner"]) == "string" and options["conveyor_owner"] ~= "" then
                    owner = options["conveyor_owner"]
                end
                if type(options["conveyor_weight"]) == "number" then
                    weight = tostring(options["conveyor_weight"])
                end
                if type(options["conveyor_cost"]) == "number" then
                    cost = tostring(options["conveyor_cost"])
                end
                if options["conveyor_priority"] == "high" then
                    level = "h"
                end
            end
            -- A message that was in flight is a put-back: it goes first in its owner's bucket.
            local put_back = release(base, message_id)
            fair_insert(base, owner, weight, level, message_id, put_back, cost)
        end
    end
end

-- The owner to serve at one priority: the smallest tag, skipping owners at
-- their cap while another owner waits; nil when nobody waits.
local function pick_owner(base, ring, cap)
    local first_owner, first_tag = nil, nil
    local start = 0
    while start < 256 do
        local head = redis.call("zrange", ring, start, start + 15, "WITHSCORES")
        if #head == 0 then
            break
        end
        if not first_owner then
            first_owner, first_tag = head[1], head[2]
            if cap <= 0 then
                return first_owner, first_tag
            end
        end
        for i = 1, #head, 2 do
            local running = tonumber(redis.call("hget", base .. ".run", head[i]) or "0") or 0
            if running < cap then
                return head[i], head[i + 1]
            end
        end
        if #head < 32 then
            break
        end
        start = start + 16
    end
    return first_owner, first_tag
end

local function fair_take(base, cap)
    local messages = base .. ".msgs"
    for _, level in ipairs({"h", "n"}) do
        local ring = base .. ".fq." .. level
        while true do
            local owner, tag = pick_owner(base, ring, cap)
            if not owner then
                break
            end
            local bucket = base .. ".b." .. level .. "." .. owner
            local message_id = redis.call("lpop", bucket)
            tag = tonumber(tag) or 0
            local weight = tonumber(redis.call("hget", base .. ".w", owner) or "1") or 1
            if weight < 1 then
                weight = 1
            end
            local cost = 1
            if message_id then
                cost = tonumber(redis.call("hget", base .. ".cost", message_id) or "1") or 1
                redis.call("hdel", base .. ".cost", message_id)
            end
            local next_tag = tag + cost / weight
            redis.call("set", base .. ".vt." .. level, tostring(tag))
            if redis.call("llen", bucket) == 0 then
                redis.call("zrem", ring, owner)
                if redis.call("zcard", ring) == 0 then
                    redis.call("del", base .. ".vt." .. level, base .. ".fin." .. level)
                else
                    redis.call("hset", base .. ".fin." .. level, owner, tostring(next_tag))
                end
            else
                redis.call("zadd", ring, next_tag, owner)
            end
            if message_id then
                if redis.call("decr", base .. ".count") < 0 then
                    redis.call("set", base .. ".count", 0)
                end
                -- A message acknowledged or purged meanwhile is dropped here, not handed out.
                if redis.call("hexists", messages, message_id) == 1 then
                    redis.call("hset", base .. ".ro", message_id, owner)
                    redis.call("hincrby", base .. ".run", owner, 1)
                    return message_id
                end
            end
        end
    end
    return nil
end
"""

#: KEYS: queue base, wake list. ARGV: message id, message, owner, weight, level (h, n or plain), cost,
#: "1" to put it at the head of its owner's bucket (work already under way).
ENQUEUE_LUA = (
    _LIBRARY
    + """
local base, wake = KEYS[1], KEYS[2]
local message_id, data, owner, weight, level, cost = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local first = ARGV[7] == "1"
redis.call("hset", base .. ".msgs", message_id, data)
if level == "plain" then
    redis.call("rpush", base, message_id)
else
    fair_insert(base, owner, weight, level, message_id, first, cost)
end
redis.call("lpush", wake, "1")
redis.call("ltrim", wake, 0, 255)
return 1
"""
)

# Acknowledges the given messages, then fetches up to ``prefetch`` more: the
# consumer's whole exchange with Redis for a freed slot in one command
# (Dramatiq's dispatch script acks one message per call, and redis-py asks
# Redis whether a script exists before every pipeline that uses one).
# A run whose acknowledgement waits for its job's commit (the consumer's ack
# gate) has freed its slot already: its owner's running count is given back
# now ("release"), so the fetch for that slot does not see the owner one job
# busier than it is; the acknowledgement follows in a later call.
# KEYS: namespace. ARGV: timestamp, queue, worker id, prefetch, cap per owner,
# how many ids to ack, the ids to ack..., then the ids to release...
ACK_AND_FETCH_LUA = (
    _LIBRARY
    + """
local namespace = KEYS[1]
local timestamp, queue_name, worker_id = ARGV[1], ARGV[2], ARGV[3]
local prefetch = tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
local ack_count = tonumber(ARGV[6])
local base = namespace .. ":" .. queue_name
local messages = base .. ".msgs"
local acks = namespace .. ":__acks__." .. worker_id .. "." .. queue_name
redis.call("zadd", namespace .. ":__heartbeats__", timestamp, worker_id)
for i = 7, 6 + ack_count do
    if redis.call("srem", acks, ARGV[i]) > 0 then
        redis.call("hdel", messages, ARGV[i])
        release(base, ARGV[i])
    end
end
for i = 7 + ack_count, #ARGV do
    release(base, ARGV[i])
end
local fair = string.sub(queue_name, -3) ~= ".DQ"
if fair then
    drain_inbox(base, """
    + str(INBOX_BATCH)
    + """)
end
local message_ids = {}
for i = 1, prefetch do
    local message_id
    if fair then
        message_id = fair_take(base, cap)
    else
        message_id = redis.call("lpop", base)
    end
    if not message_id then
        break
    end
    message_ids[i] = message_id
    redis.call("sadd", acks, message_id)
end
if next(message_ids) ~= nil then
    return redis.call("hmget", messages, unpack(message_ids))
end
return {}
"""
)

# Dramatiq's ack and nack, giving the owner's running count back in the same step.
# KEYS: namespace. ARGV: command (ack or nack), timestamp, queue, worker id, message id.
SETTLE_LUA = (
    _LIBRARY
    + """
local namespace = KEYS[1]
local command, timestamp, queue_name, worker_id, message_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local base = namespace .. ":" .. queue_name
local messages = base .. ".msgs"
local acks = namespace .. ":__acks__." .. worker_id .. "." .. queue_name
redis.call("zadd", namespace .. ":__heartbeats__", timestamp, worker_id)
if redis.call("srem", acks, message_id) > 0 then
    release(base, message_id)
    if command == "nack" then
        local canonical = queue_name
        if string.sub(queue_name, -3) == ".DQ" then
            canonical = string.sub(queue_name, 1, -4)
        end
        local dead = namespace .. ":" .. canonical .. ".XQ"
        local message = redis.call("hget", messages, message_id)
        if message then
            redis.call("zadd", dead, timestamp, message_id)
            redis.call("hset", dead .. ".msgs", message_id, message)
        end
    end
    redis.call("hdel", messages, message_id)
end
return 1
"""
)

# What is waiting and running per owner. KEYS: queue base. ARGV: how many owners at most.
OWNER_LOAD_LUA = """
local base = KEYS[1]
local limit = tonumber(ARGV[1])
local owners = {}
local order = {}
for _, level in ipairs({"h", "n"}) do
    local ring = redis.call("zrange", base .. ".fq." .. level, 0, limit - 1)
    for _, owner in ipairs(ring) do
        if not owners[owner] then
            owners[owner] = 0
            table.insert(order, owner)
        end
        owners[owner] = owners[owner] + redis.call("llen", base .. ".b." .. level .. "." .. owner)
    end
end
local running = redis.call("hgetall", base .. ".run")
for i = 1, #running, 2 do
    if not owners[running[i]] then
        owners[running[i]] = 0
        table.insert(order, running[i])
    end
end
local result = {}
for _, owner in ipairs(order) do
    table.insert(result, owner)
    table.insert(result, owners[owner])
    table.insert(result, tonumber(redis.call("hget", base .. ".run", owner) or "0") or 0)
end
return result
"""


def with_idle_credit(script: str, idle_credit_s: float) -> str:
    """One of the scripts above, with the head start an owner that starts waiting gets (estimated seconds)."""
    return script.replace("__IDLE_CREDIT_S__", repr(float(max(0.0, idle_credit_s))))


_FIXED_SUFFIXES = ("fq.h", "fq.n", "vt.h", "vt.n", "fin.h", "fin.n", "w", "cost", "count", "run", "ro")


def fixed_keys(base: str) -> list[str]:
    """The fair-dispatch keys of a queue other than the buckets (which ``<base>.b.*`` matches)."""
    return [f"{base}.{suffix}" for suffix in _FIXED_SUFFIXES]
