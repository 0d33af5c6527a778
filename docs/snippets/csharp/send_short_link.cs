// Send with tracked short links (C#, .NET or Mono; System.Net.Http and System.Runtime.Serialization)
using System;
using System.IO;
using System.Net.Http;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Json;
using System.Text;
using System.Xml;

// The answer as the original API's model types it. id and statusName are smsdispatch's.
[DataContract]
public class SmsData
{
    [DataMember(Name = "id")] public string Id;
    [DataMember(Name = "sender")] public string Sender;
    [DataMember(Name = "phoneNumber")] public string PhoneNumber;
    [DataMember(Name = "externalId")] public string ExternalId;
    [DataMember(Name = "status")] public int Status;
    [DataMember(Name = "statusName")] public string StatusName;
    [DataMember(Name = "statusTime")] public long StatusTime;
    [DataMember(Name = "createTime")] public long CreateTime;
    [DataMember(Name = "smsPrice")] public int SmsPrice;
    [DataMember(Name = "currency")] public int Currency;
    [DataMember(Name = "numberOfParts")] public int NumberOfParts;
}

[DataContract]
public class SmsErrorMeta
{
    [DataMember(Name = "source")] public string Source;
    [DataMember(Name = "parameter")] public string Parameter;
    [DataMember(Name = "value")] public string Value;
}

[DataContract]
public class SmsError
{
    [DataMember(Name = "title")] public string Title;
    [DataMember(Name = "message")] public string Message;
    [DataMember(Name = "code")] public string Code;
    [DataMember(Name = "meta")] public SmsErrorMeta Meta;
}

[DataContract]
public class SmsMetadata
{
    [DataMember(Name = "sentSms")] public int SentSms;
    [DataMember(Name = "notSentSms")] public int NotSentSms;
    [DataMember(Name = "accountBalance")] public string AccountBalance;
    [DataMember(Name = "numberOfErrors")] public int NumberOfErrors;
    [DataMember(Name = "numberOfData")] public int NumberOfData;
    [DataMember(Name = "status")] public int Status;
    [DataMember(Name = "uniqId")] public string UniqId;
}

[DataContract]
public class SmsApiResponse
{
    [DataMember(Name = "data")] public SmsData[] Data;
    [DataMember(Name = "errors")] public SmsError[] Errors;
    [DataMember(Name = "meta")] public SmsMetadata Meta;
}

public static class SendShortLink
{
    static string Env(string name, string fallback) =>
        string.IsNullOrEmpty(Environment.GetEnvironmentVariable(name))
            ? fallback : Environment.GetEnvironmentVariable(name);

    // DataContractJsonSerializer reads "123" into a long and 5 into a string; System.Text.Json,
    // which the original's .NET sample uses, refuses both. Check the JSON types first.
    static T Decode<T>(string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var doc = new XmlDocument();
        using (var reader = JsonReaderWriterFactory.CreateJsonReader(bytes, XmlDictionaryReaderQuotas.Max))
        {
            doc.Load(reader);
        }
        CheckTypes(doc.DocumentElement, typeof(T));
        return (T)new DataContractJsonSerializer(typeof(T)).ReadObject(new MemoryStream(bytes));
    }

    static void CheckTypes(XmlElement node, Type type)
    {
        if (type.IsArray)
        {
            foreach (XmlNode item in node.ChildNodes)
            {
                if (item is XmlElement element) CheckTypes(element, type.GetElementType());
            }
            return;
        }
        foreach (var field in type.GetFields())
        {
            var member = (DataMemberAttribute)Attribute.GetCustomAttribute(field, typeof(DataMemberAttribute));
            var child = member == null ? null : node[member.Name ?? field.Name];
            if (child == null) continue;
            var got = child.GetAttribute("type");
            var nullable = Nullable.GetUnderlyingType(field.FieldType);
            var t = nullable ?? field.FieldType;
            if (got == "null" && (nullable != null || !t.IsValueType)) continue;
            var want = t == typeof(string) ? "string" : t == typeof(bool) ? "boolean"
                : t.IsPrimitive ? "number" : t.IsArray ? "array" : "object";
            if (got != want)
            {
                throw new SerializationException(member.Name + ": the model has " + want + ", the answer " + got);
            }
            if (want == "array" || want == "object") CheckTypes(child, t);
        }
    }

    public static void Main()
    {
        var url = Env("SMSDISPATCH_URL", "http://127.0.0.1:8080");
        var body = "{\"sender\":\"SHOP\",\"message\":\"Spring sale: 20% off today at https://shop.example.com/spring?utm_source=sms\",\"phoneNumbers\":[\"+48111222333\",\"+48111222334\"],\"shortLink\":true}";
        var request = new HttpRequestMessage(HttpMethod.Post, url + "/v2.1/sms")
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("Application-Key", Env("SMSDISPATCH_APP_KEY", "YOUR_APPLICATION_KEY"));
        request.Headers.TryAddWithoutValidation("Authorization", Env("SMSDISPATCH_AUTHORIZATION", "YOUR_AUTHORIZATION"));
        using (var http = new HttpClient())
        {
            var response = http.SendAsync(request).GetAwaiter().GetResult();
            var json = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
            var answer = Decode<SmsApiResponse>(json);
            Console.WriteLine(json);
            foreach (var sms in answer.Data)
            {
                Console.Error.WriteLine(sms.PhoneNumber + ": " + sms.StatusName + " (" + sms.Status
                    + ") since " + sms.StatusTime + ", id " + sms.Id);
            }
            foreach (var error in answer.Errors)
            {
                Console.Error.WriteLine("refused: " + error.Code + ": " + error.Message);
            }
        }
    }
}
