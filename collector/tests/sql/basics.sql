-- Rows from files (orders and payments at 10:00) and from the buffer (orders at 11:00).
SELECT service, date, hour, count(*) AS n, min(start_time) AS first, max(start_time) AS last
FROM exchanges GROUP BY service, date, hour ORDER BY service, hour;

SELECT direction, protocol, method, count(*) AS n
FROM exchanges GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- Failed exchanges and what Envoy said about them.
SELECT service, path, status, response_flags, response_code_details
FROM exchanges WHERE status >= 500 ORDER BY start_time;

SELECT service, count(*) AS n, avg(duration_ns) / 1e6 AS avg_ms, round(sum(1 / sample_rate)) AS estimated
FROM exchanges GROUP BY service ORDER BY service;

SELECT encode(id, 'hex') AS id, trace_id, start_time
FROM exchanges WHERE service = 'payments' ORDER BY start_time LIMIT 2;

SELECT path, redactions, cardinality(redactions) AS n
FROM exchanges WHERE service = 'payments' ORDER BY start_time;

-- An empty result still has its columns.
SELECT service, path FROM exchanges WHERE start_time > TIMESTAMP '2030-01-01T00:00:00Z';
