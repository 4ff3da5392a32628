SELECT path, body_text(request_body) AS request, body_text(response_body) AS response, response_body_truncated
FROM exchanges WHERE service = 'orders' AND hour = '10' ORDER BY start_time