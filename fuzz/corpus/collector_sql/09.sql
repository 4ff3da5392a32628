SELECT json_get_str(body_text(request_body), 'order') AS order_id,
       json_get_int(body_text(request_body), 'qty') AS qty,
       json_get_bool(body_text(response_body), 'ok') AS ok,
       body_text(response_body) ->> 'id' AS id,
       json_contains(body_text(response_body), 'ok') AS has_ok
FROM exchanges WHERE service = 'orders' ORDER BY start_time LIMIT 5