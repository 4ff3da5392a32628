SELECT path, header(request_headers, 'X-Request-Id') AS request_id, header(request_headers, 'x-dup') AS dup,
       header(response_headers, 'content-type') AS response_type, header(response_trailers, 'grpc-status') AS grpc
FROM exchanges WHERE service = 'payments' ORDER BY start_time