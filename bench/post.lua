-- wrk: the benchmark's request, a LangServe invoke of the prompt route; with `-- chat`, of the chat
-- route, each wrk thread one long session (its own X-Session-ID).
threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("session", "bench-" .. threads)
end

function init(args)
   if args[1] == "chat" then
      wrk.body = '{"input": {"messages": [{"type": "human", "content": "cats"}]}}'
      wrk.headers["X-Session-ID"] = session
   end
end

wrk.method = "POST"
wrk.body = '{"input": {"topic": "cats"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-User-ID"] = "bench"
-- as every client sends one (bench/load.py's httpx too); LangServe puts it in the run metadata
wrk.headers["User-Agent"] = "wrk"
