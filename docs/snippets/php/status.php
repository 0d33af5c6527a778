<?php
// Query a message's status (PHP 7.4+)
$url = getenv('SMSDISPATCH_URL') ?: 'http://127.0.0.1:8080';
$id = getenv('SMSDISPATCH_MESSAGE_ID') ?: 'MESSAGE_ID';
$context = stream_context_create(['http' => [
    'header' => implode("\r\n", [
        'Application-Key: ' . (getenv('SMSDISPATCH_APP_KEY') ?: 'YOUR_APPLICATION_KEY'),
        'Authorization: ' . (getenv('SMSDISPATCH_AUTHORIZATION') ?: 'YOUR_AUTHORIZATION'),
    ]),
    'ignore_errors' => true,
]]);
echo file_get_contents($url . '/v2.1/sms/' . rawurlencode($id), false, $context), "\n";
