-- header(): the first value of a header, by case-insensitive name; NULL when absent.
SELECT path, header(request_headers, 'X-Request-Id') AS request_id, header(request_headers, 'x-dup') AS dup,
       header(response_headers, 'content-type') AS response_type, header(response_trailers, 'grpc-status') AS grpc
FROM exchanges WHERE service = 'payments' ORDER BY start_time;

-- body_text(): bodies as text, invalid UTF-8 replaced.
SELECT path, body_text(request_body) AS request, body_text(response_body) AS response, response_body_truncated
FROM exchanges WHERE service = 'orders' AND hour = '10' ORDER BY start_time;

-- JSON functions from datafusion-functions-json.
SELECT json_get_str(body_text(request_body), 'order') AS order_id,
       json_get_int(body_text(request_body), 'qty') AS qty,
       json_get_bool(body_text(response_body), 'ok') AS ok,
       body_text(response_body) ->> 'id' AS id,
       json_contains(body_text(response_body), 'ok') AS has_ok
FROM exchanges WHERE service = 'orders' ORDER BY start_time LIMIT 5;

SELECT json_get_int(body_text(request_body), 'qty') AS qty, count(*) AS n
FROM exchanges WHERE json_get_int(body_text(request_body), 'qty') > 5 GROUP BY 1 ORDER BY 1;

-- The header list itself, and unnesting it.
SELECT h['name'] AS name, h['value'] AS value, h['value_bytes'] AS raw
FROM (SELECT unnest(request_headers) AS h FROM exchanges WHERE service = 'payments' AND path = '/payments/0?page=1');

SELECT header(request_headers, 1) FROM exchanges;

SELECT body_text(status) FROM exchanges;
