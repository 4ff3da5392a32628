SELECT service, date, hour, count(*) AS n, min(start_time) AS first, max(start_time) AS last
FROM exchanges GROUP BY service, date, hour ORDER BY service, hour