// Verify a webhook signature (Standard Webhooks; C#, .NET or Mono)
using System;
using System.Security.Cryptography;
using System.Text;

public static class VerifyWebhook
{
    public static bool Verify(string secret, string id, string ts, string body, string signatures)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (Math.Abs(now - long.Parse(ts)) > 300)
        {
            return false; // too old or from the future: a replay
        }
        var key = Convert.FromBase64String(secret.StartsWith("whsec_") ? secret.Substring(6) : secret);
        byte[] expected;
        using (var hmac = new HMACSHA256(key))
        {
            expected = hmac.ComputeHash(Encoding.UTF8.GetBytes(id + "." + ts + "." + body));
        }
        foreach (var entry in signatures.Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries))
        {
            if (!entry.StartsWith("v1,")) continue;
            var given = Convert.FromBase64String(entry.Substring(3));
            if (given.Length == expected.Length && CryptographicEquals(given, expected)) return true;
        }
        return false;
    }

    static bool CryptographicEquals(byte[] a, byte[] b)
    {
        var diff = 0;
        for (var i = 0; i < a.Length; i++) diff |= a[i] ^ b[i];
        return diff == 0;
    }

    public static void Main()
    {
        var secret = Environment.GetEnvironmentVariable("WEBHOOK_SECRET") ?? "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        var ok = Verify(secret, Environment.GetEnvironmentVariable("WEBHOOK_ID"),
            Environment.GetEnvironmentVariable("WEBHOOK_TIMESTAMP"),
            Environment.GetEnvironmentVariable("WEBHOOK_BODY"),
            Environment.GetEnvironmentVariable("WEBHOOK_SIGNATURE"));
        Console.WriteLine(ok ? "true" : "false");
    }
}
