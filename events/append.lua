-- Atomic append of one or more events to ONE aggregate of the session service (docs/events.md).
--
-- KEYS[1] {prefix}:{p}:config    KEYS[2] {prefix}:{p}:log     KEYS[3] {prefix}:{p}:agg:{tenant}:{kind}:{id}
-- KEYS[4] {prefix}:{p}:tc:...    KEYS[5] {prefix}:{p}:mem:...  KEYS[5+i] {prefix}:{p}:idem:{tenant}:{event id i}
-- ARGV[1] expected aggregate version ('' for any; 0 means "must not exist yet")
-- ARGV[1+i] event i, the JSON envelope (docs/events.md); version and recorded_at are assigned here
--
-- Reply: {'ok', result JSON} or {'duplicate', result JSON of the first append} (every event id known, each
-- from an append to this aggregate: a retry). Known and new ids mixed, or an id another aggregate's append
-- used: refused, event_id_reused. The result names its aggregate ("tenant:kind:id") for that check.
-- Refusal: an error reply "<code> <JSON object with a message and details>"; nothing is written.
--
-- Every check runs before the first write, so a refused append leaves no trace. The script recomputes the
-- partition and every key name from the events themselves, so a caller cannot write around the rules.

local MOD = 2147483647

local function fail(code, message, extra)
  local d = extra or {}
  d.message = message
  error({code = code, d = d})
end

local function is_null(v) return v == nil or v == cjson.null end

local function nonfinite(v)
  if type(v) == 'number' then return v ~= v or v == math.huge or v == -math.huge end
  if type(v) == 'table' then
    for _, x in pairs(v) do if nonfinite(x) then return true end end
  end
  return false
end

local function json_size(v)
  if type(v) == 'string' then return #v end
  -- cjson reads 1e999 as Infinity; Redis' cjson cannot write it back, fakeredis' writes it: refuse it
  -- either way (JSON has no Infinity, and the read models' decoder refuses it), not a runtime error.
  local ok, encoded = pcall(cjson.encode, v)
  if not ok or nonfinite(v) then
    fail('invalid_json', 'a number out of range (JSON has no Infinity or NaN)')
  end
  return #encoded
end

-- A value sealed by the service (service.crypto: "enc:v1:<key id>:<base64(nonce, ciphertext, tag)>", in an
-- event that names its key) counts as the size of its plain text, so a limit means the same with encryption
-- on or off. AES-GCM adds 12 bytes of nonce and 16 of tag; base64 turns each 3 bytes into 4.
local function stored_size(v, sealed)
  if sealed then
    local body = string.match(v, '^enc:v1:%x+:([%w%+/]*=?=?)$')
    if body and #body % 4 == 0 then
      local pad = #string.match(body, '=*$')
      return math.max(0, (#body / 4) * 3 - pad - 28)
    end
  end
  return #v
end

-- The read models' decoder (msgspec) refuses JSON nested past ~1000 levels, a little below what cjson takes:
-- an event deeper than this is refused here, so it is never acknowledged and then dead-lettered.
local MAX_DEPTH = 100
local function too_deep(v, depth)
  if depth > MAX_DEPTH then return true end
  for _, x in pairs(v) do
    if type(x) == 'table' and too_deep(x, depth + 1) then return true end
  end
  return false
end

local function has_nul(v)
  if type(v) == 'string' then return string.find(v, '\0', 1, true) ~= nil end
  if type(v) == 'table' then
    for k, x in pairs(v) do if has_nul(k) or has_nul(x) then return true end end
  end
  return false
end

-- RFC 3339 as the read models' decoder reads it (msgspec): a real calendar date and time of day, seconds
-- required, an optional fraction, 'Z' or an offset of at most 23:59. A time that passes here is never
-- dead-lettered by a projector; the few forms msgspec also takes (a space for 'T', '+0100') are refused.
local DAYS = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
local function valid_time(s)
  if type(s) ~= 'string' then return false end
  local y, mo, d, h, mi, sec, rest = string.match(s, '^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$')
  if not y then return false end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if y < 1 or mo < 1 or mo > 12 or d < 1 or h > 23 or mi > 59 or sec > 59 then return false end
  local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
  if d > DAYS[mo] + ((mo == 2 and leap) and 1 or 0) then return false end
  local frac = string.match(rest, '^%.%d+')
  if frac then
    if #frac > 10 then return false end
    rest = string.sub(rest, #frac + 1)
  end
  if rest == 'Z' then return true end
  local oh, om = string.match(rest, '^[%+%-](%d%d):(%d%d)$')
  return oh ~= nil and tonumber(oh) <= 23 and tonumber(om) <= 59
end

-- JSON text is UTF-8 (RFC 8259), and the read models' decoder refuses anything else; cjson does not check.
-- ASCII-only text (the common case) costs one search; otherwise each lead byte and its continuations.
local function utf8_sequence(q)
  local n, a, b = #q, string.byte(q, 1, 2)
  if a >= 194 and a <= 223 then return n == 2 end
  if a >= 224 and a <= 239 then
    return n == 3 and (a ~= 224 or b >= 160) and (a ~= 237 or b <= 159)  -- no overlong, no surrogate
  end
  if a >= 240 and a <= 244 then return n == 4 and (a ~= 240 or b >= 144) and (a ~= 244 or b <= 143) end
  return false
end
local function valid_utf8(s)
  if not string.find(s, '[\128-\255]') then return true end
  local ok = true
  local rest = string.gsub(s, '[\192-\255][\128-\191]*', function(q)
    if ok and not utf8_sequence(q) then ok = false end
    return ''
  end)
  return ok and not string.find(rest, '[\128-\255]')
end

local decoding = nil  -- the index of the event being decoded, so a decode error is reported as such

local function main()
  local config_key = KEYS[1]
  local base, partition = string.match(config_key, '^(.-{(%d+)}):config$')
  if not base then fail('keys_mismatch', 'KEYS[1] must be the partition config key') end
  partition = tonumber(partition)
  local cfg = redis.call('HMGET', config_key, 'partitions', 'dedup_window_s', 'max_content_bytes',
    'max_messages', 'max_key_length', 'max_value_bytes', 'max_metadata_bytes', 'max_memory_keys',
    'max_tool_calls', 'max_id_length', 'state')
  if not cfg[1] then
    fail('log_not_configured', 'the log is not set up: run the service (or EventLog.setup) once first')
  end
  if cfg[11] == 'lost' then
    fail('log_state_lost', 'the log lost its state (a Redis restarted empty?): writes are refused until '
      .. '`sessions recover-log` restores it from the archive')
  end
  local partitions = tonumber(cfg[1])
  local ttl = tonumber(cfg[2])
  local lim = {
    content = tonumber(cfg[3]), messages = tonumber(cfg[4]), key = tonumber(cfg[5]), value = tonumber(cfg[6]),
    metadata = tonumber(cfg[7]), memkeys = tonumber(cfg[8]), toolcalls = tonumber(cfg[9]), id = tonumber(cfg[10]),
  }

  local n = #ARGV - 1
  if n < 1 then fail('empty_append', 'an append needs at least one event') end
  if #KEYS ~= 5 + n then fail('keys_mismatch', 'expected ' .. (5 + n) .. ' keys for ' .. n .. ' events') end

  local function check_id(what, v, allow_colon)
    if type(v) ~= 'string' or #v == 0 then fail('invalid_' .. what, what .. ' must be a non-empty string') end
    if #v > lim.id then
      fail('id_too_long', what .. ' is ' .. #v .. ' bytes; the limit is ' .. lim.id, {limit = lim.id})
    end
    if string.find(v, '%c') then fail('invalid_' .. what, what .. ' must not contain control characters') end
    if not allow_colon and string.find(v, ':', 1, true) then
      fail('invalid_' .. what, what .. " must not contain ':'")
    end
  end
  local function check_metadata(v, what)
    if is_null(v) then return end
    -- A non-empty JSON array is a table with a length; an object's keys are all strings (length 0).
    if type(v) ~= 'table' or #v > 0 then fail('invalid_metadata', what .. ' must be a JSON object') end
    local size = json_size(v)
    if size > lim.metadata then
      fail('metadata_too_large', what .. ' is ' .. size .. ' bytes; the limit is ' .. lim.metadata,
        {limit = lim.metadata})
    end
  end
  local function opt_string(v, what)
    if not is_null(v) and type(v) ~= 'string' then fail('invalid_event', what .. ' must be a string') end
  end

  -- Decode and check the envelopes: one aggregate, keys named as the events say.
  local events = {}
  local tenant, kind, agg_id
  local seen_ids = {}
  for i = 1, n do
    -- No pcall of its own (Redis' pcall costs microseconds): the one around main() reports a failed decode.
    decoding = i
    local ev = cjson.decode(ARGV[1 + i])
    decoding = nil
    if type(ev) ~= 'table' then fail('invalid_json', 'event ' .. i .. ' is not a JSON object') end
    if not valid_utf8(ARGV[1 + i]) then fail('invalid_json', 'event ' .. i .. ' is not valid UTF-8 text') end
    if too_deep(ev, 1) then
      fail('invalid_json', 'event ' .. i .. ' is nested deeper than ' .. MAX_DEPTH .. ' levels')
    end
    if type(ev.type) ~= 'string' then fail('invalid_event', 'event ' .. i .. ' has no type') end
    if type(ev.id) ~= 'string' or not string.match(ev.id,
        '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$')
        or string.find(ev.id, '%u') then
      fail('invalid_event_id', 'event ' .. i .. ': id must be a UUID in lowercase hex (a UUIDv7 is best)')
    end
    if seen_ids[ev.id] then fail('duplicate_event_id', 'event id ' .. ev.id .. ' appears twice in one append') end
    seen_ids[ev.id] = true
    local t = ev.tenant
    if is_null(t) then t = 'default' end
    check_id('tenant', t, false)
    check_id('aggregate_id', ev.aggregate_id, true)
    if ev.aggregate_kind ~= 'session' and ev.aggregate_kind ~= 'memory' then
      fail('invalid_aggregate_kind', "aggregate_kind must be 'session' or 'memory'")
    end
    if i == 1 then
      tenant, kind, agg_id = t, ev.aggregate_kind, ev.aggregate_id
    elseif t ~= tenant or ev.aggregate_kind ~= kind or ev.aggregate_id ~= agg_id then
      fail('mixed_aggregates', 'all events of one append must belong to one aggregate')
    end
    if not valid_time(ev.occurred_at) then
      fail('invalid_occurred_at', 'occurred_at must be an RFC 3339 timestamp with seconds and a time zone, '
        .. 'e.g. 2026-01-31T12:00:00.123Z')
    end
    if not is_null(ev.actor) then
      local a = ev.actor
      if type(a) ~= 'table' or (a.kind ~= 'user' and a.kind ~= 'model' and a.kind ~= 'service'
          and a.kind ~= 'admin') or type(a.id) ~= 'string' then
        fail('invalid_actor', 'actor must be {kind: user|model|service|admin, id: string}')
      end
    end
    opt_string(ev.correlation_id, 'correlation_id')
    opt_string(ev.causation_id, 'causation_id')
    opt_string(ev.encryption_key_id, 'encryption_key_id')
    if type(ev.payload) ~= 'table' then
      if ev.type == 'session.deleted.v1' and is_null(ev.payload) then ev.payload = {}
      else fail('invalid_payload', 'event ' .. i .. ' has no payload object') end
    end
    -- PostgreSQL text cannot hold NUL, so every read model dead-letters such an event: refuse it instead.
    -- The plain find is the cheap test; the walk tells a NUL from an escaped backslash before 'u0000'.
    if string.find(ARGV[1 + i], '\\u0000', 1, true) and has_nul(ev) then
      fail('nul_character', 'event ' .. i .. ': a string holds the NUL character (\\u0000), which the read '
        .. 'models cannot store')
    end
    events[i] = ev
  end

  -- The partition is a function of the aggregate: recompute it so nobody can write around the order.
  local h = 0
  local ident = tenant .. '/' .. kind .. '/' .. agg_id
  for j = 1, #ident do h = (h * 31 + string.byte(ident, j)) % MOD end
  if h % partitions ~= partition then
    fail('partition_mismatch', 'aggregate ' .. ident .. ' belongs to partition ' .. (h % partitions)
      .. ', not ' .. partition, {partition = h % partitions})
  end
  local suffix = tenant .. ':' .. kind .. ':' .. agg_id
  if KEYS[2] ~= base .. ':log' or KEYS[3] ~= base .. ':agg:' .. suffix or KEYS[4] ~= base .. ':tc:' .. suffix
      or KEYS[5] ~= base .. ':mem:' .. suffix then
    fail('keys_mismatch', 'KEYS[2..5] must be the log, state, tool call and memory keys of the aggregate')
  end
  for i = 1, n do
    if KEYS[5 + i] ~= base .. ':idem:' .. tenant .. ':' .. events[i].id then
      fail('keys_mismatch', 'KEYS[' .. (5 + i) .. '] must be the idempotency key of event ' .. i)
    end
  end

  -- Idempotency, per event id: one GET each. A batch whose ids are all known, each by an append to this
  -- aggregate, is a retry: it returns the result stored for its first id and writes nothing. A batch mixing
  -- known and new ids, or naming an id an append to another aggregate used, is refused (event_id_reused):
  -- answering it `duplicate` would silently drop the new events, or report another aggregate's append.
  local known, fresh, foreign = {}, {}, {}
  local first = nil
  for i = 1, n do
    local stored = redis.call('GET', KEYS[5 + i])
    if stored then
      known[#known + 1] = events[i].id
      if i == 1 then first = stored end
      -- A result names its aggregate ("tenant:kind:id"); one stored before that field existed is taken as
      -- this aggregate's (the old rule), and the same string as the first id's is the same append.
      if stored ~= first then
        local agg = cjson.decode(stored).aggregate
        if agg ~= nil and agg ~= suffix then foreign[#foreign + 1] = events[i].id end
      end
    else
      fresh[#fresh + 1] = events[i].id
    end
  end
  if first and #foreign == 0 then
    local agg = cjson.decode(first).aggregate
    if agg ~= nil and agg ~= suffix then foreign[#foreign + 1] = events[1].id end
  end
  if #foreign > 0 then
    fail('event_id_reused', 'event id(s) ' .. table.concat(foreign, ', ') .. ' were used by an append to '
      .. 'another aggregate; give each new event a new id', {event_ids = foreign})
  end
  if #known > 0 and #fresh > 0 then
    fail('event_id_reused', 'this append mixes event ids already appended (' .. table.concat(known, ', ')
      .. ') with new ones (' .. table.concat(fresh, ', ') .. '): a retry must repeat the first append '
      .. 'exactly, and new events need new ids; nothing was appended', {event_ids = known, new_event_ids = fresh})
  end
  if first then return {'duplicate', first} end

  local st = redis.call('HMGET', KEYS[3], 'v', 'pos', 'user', 'del', 'mc')
  local version = tonumber(st[1] or '0')
  -- Redis turns a missing field into false; `or nil` makes it nil so it stays out of the JSON reply.
  local pos, owner, deleted, mc = st[2] or nil, st[3] or nil, st[4] == '1', tonumber(st[5] or '0')
  local expected = ARGV[1]
  if expected ~= '' and tonumber(expected) ~= version then
    fail('version_conflict', 'expected version ' .. expected .. ' but the aggregate is at ' .. version,
      {current_version = version, expected_version = tonumber(expected)})
  end

  -- Apply the rules to a scratch copy of the state; write only when every event passed.
  local tc_new = {}        -- tool call id -> '0' pending / '1' answered, for this append
  local mem_overlay = {}   -- memory key -> true (present) / false (absent), for this append
  local mem_cleared = false
  local mem_count = nil    -- keys in the memory scope; read only by memory events
  local removed = 0
  local created, deleted_now, noop = false, false, false

  local function tool_call_state(id)
    if tc_new[id] ~= nil then return tc_new[id] end
    return redis.call('HGET', KEYS[4], id)
  end
  local function has_key(k)
    if mem_overlay[k] ~= nil then return mem_overlay[k] end
    if mem_cleared then return false end
    return redis.call('SISMEMBER', KEYS[5], k) == 1
  end
  local function require_session()
    if not owner then fail('session_not_found', 'session ' .. agg_id .. ' does not exist') end
    if deleted then fail('session_deleted', 'session ' .. agg_id .. ' was deleted') end
  end
  local function check_memory_scope(p)
    check_id('user_id', p.user_id, true)
    if is_null(p.session_id) then
      if kind ~= 'memory' or agg_id ~= p.user_id then
        fail('wrong_aggregate', 'user-scoped memory belongs to the aggregate (memory, user_id)')
      end
    else
      check_id('session_id', p.session_id, true)
      if kind ~= 'session' or agg_id ~= p.session_id then
        fail('wrong_aggregate', 'session-scoped memory belongs to the aggregate (session, session_id)')
      end
      if not owner then
        fail('memory_session_not_found', 'session ' .. agg_id .. ' does not exist')
      end
      if deleted then fail('session_deleted', 'session ' .. agg_id .. ' was deleted') end
      if owner ~= p.user_id then
        fail('memory_session_not_owned', 'session ' .. agg_id .. ' does not belong to user ' .. p.user_id)
      end
    end
  end
  local function check_key(k)
    if type(k) ~= 'string' or #k == 0 then fail('invalid_key', 'a memory key must be a non-empty string') end
    if #k > lim.key then
      fail('key_too_long', 'memory key is ' .. #k .. ' bytes; the limit is ' .. lim.key, {limit = lim.key})
    end
    if string.find(k, '%c') then fail('invalid_key', 'a memory key must not contain control characters') end
  end

  for i = 1, n do
    local ev, p, t = events[i], events[i].payload, events[i].type
    local sealed = not is_null(ev.encryption_key_id)
    if t == 'session.created.v1' then
      if kind ~= 'session' then fail('wrong_aggregate', 'session events belong to a session aggregate') end
      check_id('user_id', p.user_id, true)
      check_metadata(p.metadata, 'session metadata')
      if owner and owner ~= p.user_id then
        fail('session_owned_by_another_user', 'session ' .. agg_id .. ' belongs to another user')
      end
      if deleted then fail('session_deleted', 'session ' .. agg_id .. ' was deleted; its id cannot be reused') end
      if owner then
        if n > 1 then fail('session_exists', 'session ' .. agg_id .. ' already exists') end
        noop = true  -- get-or-create of an existing session of this user: nothing to append
      else
        owner, created = p.user_id, true
      end
    elseif t == 'session.messages_added.v1' then
      if kind ~= 'session' then fail('wrong_aggregate', 'session events belong to a session aggregate') end
      require_session()
      local msgs = p.messages
      if type(msgs) ~= 'table' or #msgs == 0 then
        fail('empty_messages', 'messages must be a non-empty list')
      end
      if #msgs > lim.messages then
        fail('too_many_messages', #msgs .. ' messages in one append; the limit is ' .. lim.messages,
          {limit = lim.messages})
      end
      for j, m in ipairs(msgs) do
        local where = 'message ' .. j
        if type(m) ~= 'table' then fail('invalid_message', where .. ' must be an object') end
        local role = m.role
        if role ~= 'user' and role ~= 'assistant' and role ~= 'system' and role ~= 'tool' then
          fail('invalid_role', where .. ': role must be one of user, assistant, system, tool')
        end
        opt_string(m.content, where .. ' content')
        opt_string(m.name, where .. ' name')
        if not is_null(m.timestamp) then
          local ts = m.timestamp
          if type(ts) ~= 'number' or ts ~= ts or ts % 1 ~= 0 then
            fail('invalid_timestamp', where .. ': timestamp must be a whole number of epoch milliseconds',
              {index = j - 1})
          end
          -- Past 2^53 ms (285,000 years) a timestamp is no time, and past 2^63 no PostgreSQL bigint: the
          -- projector could not store the message at all.
          if not (math.abs(ts) < 2^53) then
            fail('invalid_timestamp', where .. ': timestamp is out of range (epoch milliseconds below 2^53)',
              {index = j - 1})
          end
        end
        local content_size = is_null(m.content) and 0 or stored_size(m.content, sealed)
        if content_size > lim.content then
          fail('content_too_large', where .. ' content is ' .. content_size .. ' bytes; the limit is '
            .. lim.content, {limit = lim.content, index = j - 1})
        end
        check_metadata(m.metadata, where .. ' metadata')
        local calls = m.tool_calls
        local has_calls = false
        if not is_null(calls) then
          -- cjson reads [] and {} alike; a non-empty object has no length.
          if type(calls) ~= 'table' or (#calls == 0 and next(calls) ~= nil) then
            fail('invalid_tool_calls', where .. ': tool_calls must be a list')
          end
          if #calls > 0 and role ~= 'assistant' then
            fail('tool_calls_not_allowed', where .. ': only assistant messages may carry tool_calls')
          end
          if #calls > lim.toolcalls then
            fail('too_many_tool_calls', where .. ' has ' .. #calls .. ' tool calls; the limit is '
              .. lim.toolcalls, {limit = lim.toolcalls})
          end
          for _, c in ipairs(calls) do
            if type(c) ~= 'table' then fail('invalid_tool_calls', where .. ': a tool call must be an object') end
            check_id('tool_call_id', c.id, true)
            if not is_null(c.type) and c.type ~= 'function' then
              fail('invalid_tool_calls', where .. ": tool call type must be 'function'")
            end
            local f = c['function']
            if type(f) ~= 'table' or type(f.name) ~= 'string' or #f.name == 0 then
              fail('invalid_tool_calls', where .. ': tool call ' .. c.id .. ' needs function.name')
            end
            if not is_null(f.arguments) and type(f.arguments) ~= 'string' then
              fail('invalid_tool_calls', where .. ': function.arguments must be a JSON string')
            end
            if tool_call_state(c.id) then
              fail('duplicate_tool_call_id', where .. ': tool call id ' .. c.id .. ' is already used in this session',
                {tool_call_id = c.id})
            end
            tc_new[c.id] = '0'
            has_calls = true
          end
        end
        if role == 'tool' then
          local ref = m.tool_call_id
          if type(ref) ~= 'string' or #ref == 0 then
            fail('tool_call_id_required', where .. ': a tool message must name the tool_call_id it answers')
          end
          local s = tool_call_state(ref)
          if not s then
            fail('unknown_tool_call', where .. ': no earlier assistant message in this session made tool call '
              .. ref, {tool_call_id = ref})
          end
          if s == '1' then
            fail('tool_call_already_answered', where .. ': tool call ' .. ref .. ' already has a result',
              {tool_call_id = ref})
          end
          tc_new[ref] = '1'
        elseif not is_null(m.tool_call_id) then
          fail('unexpected_tool_call_id', where .. ': only tool messages carry a tool_call_id')
        end
        if is_null(m.content) and not has_calls then
          fail('missing_content', where .. ' needs content (or, for an assistant, tool_calls)')
        end
      end
      mc = mc + #msgs
    elseif t == 'session.deleted.v1' then
      if kind ~= 'session' then fail('wrong_aggregate', 'session events belong to a session aggregate') end
      if #p > 0 then fail('invalid_payload', 'event ' .. i .. ' has no payload object') end
      opt_string(p.reason, 'reason')
      require_session()
      deleted, deleted_now = true, true
    elseif t == 'memory.saved.v1' then
      check_memory_scope(p)
      if mem_count == nil then mem_count = redis.call('SCARD', KEYS[5]) end
      check_key(p.key)
      if p.value == nil then fail('invalid_value', 'memory.saved needs a value (any JSON value)') end
      local size = type(p.value) == 'string' and stored_size(p.value, sealed) or json_size(p.value)
      if size > lim.value then
        fail('value_too_large', 'memory value is ' .. size .. ' bytes; the limit is ' .. lim.value,
          {limit = lim.value})
      end
      if not has_key(p.key) then
        if mem_count >= lim.memkeys then
          fail('too_many_memory_keys', 'this scope already holds ' .. mem_count .. ' keys; the limit is '
            .. lim.memkeys, {limit = lim.memkeys})
        end
        mem_count = mem_count + 1
        mem_overlay[p.key] = true
      end
    elseif t == 'memory.deleted.v1' then
      check_memory_scope(p)
      if mem_count == nil then mem_count = redis.call('SCARD', KEYS[5]) end
      check_key(p.key)
      if has_key(p.key) then
        mem_overlay[p.key] = false
        mem_count = mem_count - 1
        removed = removed + 1
      elseif n == 1 then
        noop = true
      else
        fail('memory_key_not_found', 'memory key ' .. p.key .. ' does not exist in this scope')
      end
    elseif t == 'memory.cleared.v1' then
      check_memory_scope(p)
      if mem_count == nil then mem_count = redis.call('SCARD', KEYS[5]) end
      if mem_count == 0 and n == 1 then noop = true end
      removed = removed + mem_count
      mem_cleared, mem_overlay, mem_count = true, {}, 0
    elseif t == 'user.forgotten.v1' then
      -- Crypto-shredding's audit record (service.privacy): the user's memory aggregate forgets its keys.
      check_id('user_id', p.user_id, true)
      if kind ~= 'memory' or agg_id ~= p.user_id then
        fail('wrong_aggregate', 'user.forgotten belongs to the aggregate (memory, user_id)')
      end
      if mem_count == nil then mem_count = redis.call('SCARD', KEYS[5]) end
      removed = removed + mem_count
      mem_cleared, mem_overlay, mem_count = true, {}, 0
    else
      fail('unknown_event_type', 'unknown event type ' .. t)
    end
  end

  local result = {partition = partition, version = version, position = pos, appended = false, removed = 0,
    aggregate = suffix}
  if kind == 'session' then result.message_count = mc end
  if noop then return {'ok', cjson.encode(result)} end

  -- Every check passed: write.
  local ids = {}
  for i = 1, n do
    version = version + 1
    pos = redis.call('XADD', KEYS[2], '*', 'type', events[i].type, 'version', tostring(version),
      'event', ARGV[1 + i])
    ids[i] = events[i].id
  end
  local fields = {'v', version, 'pos', pos}
  if kind == 'session' then
    table.insert(fields, 'mc'); table.insert(fields, mc)
    if created then table.insert(fields, 'user'); table.insert(fields, owner) end
    if deleted_now then table.insert(fields, 'del'); table.insert(fields, '1') end
  end
  redis.call('HSET', KEYS[3], unpack(fields))
  for id, s in pairs(tc_new) do redis.call('HSET', KEYS[4], id, s) end
  if deleted_now then
    redis.call('DEL', KEYS[5])
  else
    if mem_cleared then redis.call('DEL', KEYS[5]) end
    for k, present in pairs(mem_overlay) do
      if present then redis.call('SADD', KEYS[5], k) else redis.call('SREM', KEYS[5], k) end
    end
  end
  result.version, result.position, result.appended, result.removed = version, pos, true, removed
  result.event_ids = ids
  local encoded = cjson.encode(result)
  for i = 1, n do redis.call('SET', KEYS[5 + i], encoded, 'EX', ttl) end
  return {'ok', encoded}
end

local ok, res = pcall(main)
if ok then return res end
if type(res) == 'table' and res.code then
  return redis.error_reply(res.code .. ' ' .. cjson.encode(res.d))
end
if decoding then
  return redis.error_reply('invalid_json ' .. cjson.encode({message = 'event ' .. decoding .. ' is not valid JSON'}))
end
return redis.error_reply('script_error ' .. cjson.encode({message = tostring(res)}))
