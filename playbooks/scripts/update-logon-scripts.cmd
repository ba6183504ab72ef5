@echo off
rem ===========================================================================
rem Points the logon scripts in NETLOGON at new-sbs: every "\\old-sbs\" and
rem "\\old-sbs.acme.local" becomes the same path on new-sbs (mapped drives,
rem printers, tools). File Replication Service copies the change to old-sbs.
rem The original scripts are saved once, before the first change, to
rem C:\mig\backup\netlogon: the step's rollback copies them back.
rem Safe to run again. Runs directly: new-sbs edits its own SYSVOL.
rem ===========================================================================
setlocal
set SCRIPTS=C:\WINDOWS\SYSVOL\sysvol\acme.local\scripts
set BACKUP=C:\mig\backup\netlogon
if not exist "%SCRIPTS%\" (
    echo %SCRIPTS% not found: is new-sbs a domain controller with SYSVOL shared? 1>&2
    exit /b 1
)
if not exist "%BACKUP%\" (
    mkdir "%BACKUP%"
    xcopy "%SCRIPTS%\*" "%BACKUP%\" /e /k /h /y
    if errorlevel 1 exit /b 1
)
rem Files are read and written in the ANSI code page, as cmd and kix expect.
powershell -NoProfile -NonInteractive -Command "$enc = [Text.Encoding]::Default; Get-ChildItem -Path 'C:\WINDOWS\SYSVOL\sysvol\acme.local\scripts' -Recurse -Include *.bat,*.cmd,*.vbs,*.kix | Where-Object { -not $_.PSIsContainer } | ForEach-Object { $old = [IO.File]::ReadAllText($_.FullName, $enc); $new = $old -replace '(?i)\\\\old-sbs(?=[\\.])', '\\new-sbs'; if ($new -ne $old) { [IO.File]::WriteAllText($_.FullName, $new, $enc); Write-Output ('updated ' + $_.FullName) } }"
if errorlevel 1 exit /b 1
echo Remaining mentions of old-sbs (the step's check requires none):
findstr /s /i /n "old-sbs" "%SCRIPTS%\*"
exit /b 0
