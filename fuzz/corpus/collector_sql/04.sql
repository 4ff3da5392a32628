SELECT encode(id, 'hex') AS id, trace_id, start_time
FROM exchanges WHERE service = 'payments' ORDER BY start_time LIMIT 2