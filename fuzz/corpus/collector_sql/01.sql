SELECT direction, protocol, method, count(*) AS n
FROM exchanges GROUP BY 1, 2, 3 ORDER BY 1, 2, 3