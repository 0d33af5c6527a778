<?php
// Verify a webhook signature (Standard Webhooks; PHP 7.4+)
function verify_webhook(string $secret, string $id, string $ts, string $body, string $sigs): bool
{
    if (abs(time() - (int)$ts) > 300) {
        return false;  // too old or from the future: a replay
    }
    $key = base64_decode(preg_replace('/^whsec_/', '', $secret));
    $expected = base64_encode(hash_hmac('sha256', "$id.$ts.$body", $key, true));
    foreach (preg_split('/\s+/', trim($sigs)) as $entry) {
        [$version, $sig] = array_pad(explode(',', $entry, 2), 2, '');
        if ($version === 'v1' && hash_equals($expected, $sig)) {
            return true;
        }
    }
    return false;
}

$ok = verify_webhook(
    getenv('WEBHOOK_SECRET') ?: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    getenv('WEBHOOK_ID'),
    getenv('WEBHOOK_TIMESTAMP'),
    getenv('WEBHOOK_BODY'),
    getenv('WEBHOOK_SIGNATURE')
);
echo $ok ? "true\n" : "false\n";
