SELECT json_get_int(body_text(request_body), 'qty') AS qty, count(*) AS n
FROM exchanges WHERE json_get_int(body_text(request_body), 'qty') > 5 GROUP BY 1 ORDER BY 1