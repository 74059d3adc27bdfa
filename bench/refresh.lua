-- wrk script: each connection presents a live refresh token and keeps the one it gets back.
-- args: <token file> <thread count>. Thread i takes every i-th line, so no token is shared.
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  tokens = {}
  local threads = tonumber(args[2])
  local line_number = 0
  for line in io.lines(args[1]) do
    if line_number % threads == id then table.insert(tokens, line) end
    line_number = line_number + 1
  end
end

function request()
  local token = table.remove(tokens)
  return wrk.format("POST", "/token?grant_type=refresh_token",
    {["Content-Type"] = "application/json"}, '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  local token = body:match('"refresh_token":%s*"([^"]+)"')
  if token then table.insert(tokens, token) end
end
