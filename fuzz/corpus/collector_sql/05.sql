SELECT path, redactions, cardinality(redactions) AS n
FROM exchanges WHERE service = 'payments' ORDER BY start_time