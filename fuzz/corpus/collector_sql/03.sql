SELECT service, count(*) AS n, avg(duration_ns) / 1e6 AS avg_ms, round(sum(1 / sample_rate)) AS estimated
FROM exchanges GROUP BY service ORDER BY service