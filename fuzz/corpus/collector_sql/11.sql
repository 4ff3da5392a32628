SELECT h['name'] AS name, h['value'] AS value, h['value_bytes'] AS raw
FROM (SELECT unnest(request_headers) AS h FROM exchanges WHERE service = 'payments' AND path = '/payments/0?page=1')