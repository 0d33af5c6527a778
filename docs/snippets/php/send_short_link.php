<?php
// Send with tracked short links (PHP 7.4+, no extensions beyond the defaults)
$url = getenv('SMSDISPATCH_URL') ?: 'http://127.0.0.1:8080';
$body = [
    "sender" => "SHOP",
    "message" => "Spring sale: 20% off today at https://shop.example.com/spring?utm_source=sms",
    "phoneNumbers" => ["+48111222333", "+48111222334"],
    "shortLink" => true,
];
$context = stream_context_create(['http' => [
    'method' => 'POST',
    'header' => implode("\r\n", [
        'Content-Type: application/json',
        'Application-Key: ' . (getenv('SMSDISPATCH_APP_KEY') ?: 'YOUR_APPLICATION_KEY'),
        'Authorization: ' . (getenv('SMSDISPATCH_AUTHORIZATION') ?: 'YOUR_AUTHORIZATION'),
    ]),
    'content' => json_encode($body),
    'ignore_errors' => true,  // return the error body on 4xx/5xx too
]]);
echo file_get_contents($url . '/v2.1/sms', false, $context), "\n";
