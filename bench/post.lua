-- wrk: the benchmark's request, a LangServe invoke of the prompt route.
wrk.method = "POST"
wrk.body = '{"input": {"topic": "cats"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-User-ID"] = "bench"
